// Command backend is the benchmark's upstream: a minimal HTTP/1.1 server that
// answers every request with a fixed body (1 KiB by default) over keep-alive
// connections, on one or more loopback listeners. GET /__count returns how
// many requests each listener served, so bench/run.sh can check the route's
// weighted split. With -tls-addr it also serves the same body over TLS
// (a self-signed certificate made at start), the far end of the mesh
// suite's CONNECT tunnels.
//
//	backend -addrs 127.0.0.1:18080,127.0.0.1:18090 -size 1024 -tls-addr 127.0.0.1:18443
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addrs := flag.String("addrs", "127.0.0.1:18080", "comma-separated listen addresses")
	size := flag.Int("size", 1024, "response body size in bytes")
	tlsAddr := flag.String("tls-addr", "", "also serve the body over TLS on this address")
	flag.Parse()

	body := bytes.Repeat([]byte("x"), *size)
	contentLength := strconv.Itoa(len(body))
	list := strings.Split(*addrs, ",")
	counts := make([]atomic.Int64, len(list))

	countsHandler := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		var b strings.Builder
		b.WriteByte('{')
		for i, addr := range list {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d", addr, counts[i].Load())
		}
		b.WriteString("}\n")
		_, _ = w.Write([]byte(b.String()))
	}

	serveBody := func(w http.ResponseWriter) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{contentLength}
		_, _ = w.Write(body)
	}

	var wg sync.WaitGroup
	for i, addr := range list {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		counter := &counts[i]
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/__count" {
				countsHandler(w)
				return
			}
			counter.Add(1)
			serveBody(w)
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Fatal(http.Serve(ln, handler))
		}()
	}
	if *tlsAddr != "" {
		ln, err := tls.Listen("tcp", *tlsAddr, &tls.Config{Certificates: []tls.Certificate{selfSigned()}})
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { serveBody(w) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			// HTTP/1.1 only, as the plaintext listeners
			srv := &http.Server{Handler: handler, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
			log.Fatal(srv.Serve(ln))
		}()
	}
	log.Printf("backend: serving %d bytes on %s %s", len(body), *addrs, *tlsAddr)
	wg.Wait()
}

// selfSigned makes a throwaway certificate; clients skip verification.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench backend"},
		DNSNames:     []string{"backend-tls.bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
