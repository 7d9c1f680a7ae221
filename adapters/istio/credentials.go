package istio

import (
	"os"
	"path/filepath"
)

// CredentialsEnv names the environment variable that overrides the
// directory credentialName is resolved in (see ResolveCredential).
const CredentialsEnv = "CADDY_ISTIO_CREDENTIALS"

// credentialsDirName is the directory, next to the config file, that
// credentialName is resolved in when CredentialsEnv is not set.
const credentialsDirName = "credentials"

// CredentialsDir returns the directory credentialName is resolved in for
// the config file configFile: $CADDY_ISTIO_CREDENTIALS when set, else
// "credentials" next to configFile. It returns "" when neither is known
// (the config came without a file name, e.g. through the admin API).
func CredentialsDir(configFile string) string {
	if dir := os.Getenv(CredentialsEnv); dir != "" {
		return dir
	}
	if configFile == "" {
		return ""
	}
	// Relative like configFile: Caddy reads the files from the directory
	// the file name is relative to.
	return filepath.Join(filepath.Dir(configFile), credentialsDirName)
}

// Credential is a TLS credential found in the local credential directory:
// the files of the Kubernetes Secret that an Istio credentialName names.
// Empty fields are files that are not there.
type Credential struct {
	Cert string // certificate chain (PEM): tls.crt, or cert
	Key  string // private key (PEM): tls.key, or key
	CA   string // trusted CAs (PEM): ca.crt or cacert, else those of the <name>-cacert secret
}

// ResolveCredential finds the credential name of namespace ns under dir
// (see CredentialsDir), with the layout of Istio's Kubernetes secrets, one
// directory per secret and one file per secret key:
//
//	DIR/NS/NAME/tls.crt  (or cert)    the certificate chain
//	DIR/NS/NAME/tls.key  (or key)     its private key
//	DIR/NS/NAME/ca.crt   (or cacert)  CAs that verify client certificates
//	DIR/NS/NAME-cacert/ca.crt (or cacert)  used when NAME has no CA, as
//	                                  Istio's separate "-cacert" secret
//
// The keys are looked up in this order, as Istio's secret controller
// does (tls.crt/tls.key/ca.crt of a kubernetes.io/tls secret first, then
// the generic secret's cert/key/cacert). found is false when neither NAME
// nor NAME-cacert exists; looked lists the directories looked at, for
// messages. Other engineers reuse this for DestinationRule credentialName.
func ResolveCredential(dir, ns, name string) (cred Credential, looked []string, found bool) {
	if dir == "" {
		return Credential{}, nil, false
	}
	secret := filepath.Join(dir, ns, name)
	caSecret := filepath.Join(dir, ns, name+"-cacert")
	looked = []string{secret, caSecret}
	if isDir(secret) {
		found = true
		cred.Cert = firstFile(secret, "tls.crt", "cert")
		cred.Key = firstFile(secret, "tls.key", "key")
		cred.CA = firstFile(secret, "ca.crt", "cacert")
	}
	if cred.CA == "" && isDir(caSecret) {
		found = true
		cred.CA = firstFile(caSecret, "ca.crt", "cacert")
	}
	return cred, looked, found
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// firstFile returns the path of the first of names that is a file in dir.
func firstFile(dir string, names ...string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}
