package istioroute

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Handler.PathNormalization values: Istio's MeshConfig.pathNormalization.
const (
	pathNormalizationNone                  = "NONE"
	pathNormalizationBase                  = "BASE"
	pathNormalizationMergeSlashes          = "MERGE_SLASHES"
	pathNormalizationDecodeAndMergeSlashes = "DECODE_AND_MERGE_SLASHES"
	// pathNormalizationDefault is Istio's name for BASE.
	pathNormalizationDefault = "DEFAULT"
)

// pathNormalization is a compiled Handler.PathNormalization. Each mode
// does what the one before it does, and more.
type pathNormalization uint8

const (
	// normalizeNone routes and forwards the path as sent.
	normalizeNone pathNormalization = iota
	// normalizeBase is Envoy's normalize_path: RFC 3986 dot-segment
	// removal, decoding of percent-encoded unreserved characters,
	// backslash to slash; %00 is rejected.
	normalizeBase
	// normalizeMergeSlashes adds Envoy's merge_slashes after BASE.
	normalizeMergeSlashes
	// normalizeDecodeAndMergeSlashes first decodes %2F and %5C (Envoy's
	// path_with_escaped_slashes_action UNESCAPE_AND_FORWARD).
	normalizeDecodeAndMergeSlashes
)

// parsePathNormalization compiles a Handler.PathNormalization; "" is BASE.
func parsePathNormalization(s string) (pathNormalization, error) {
	switch s {
	case pathNormalizationNone:
		return normalizeNone, nil
	case "", pathNormalizationBase, pathNormalizationDefault:
		return normalizeBase, nil
	case pathNormalizationMergeSlashes:
		return normalizeMergeSlashes, nil
	case pathNormalizationDecodeAndMergeSlashes:
		return normalizeDecodeAndMergeSlashes, nil
	}
	return 0, fmt.Errorf("unknown path_normalization %q: must be %s, %s, %s or %s", s,
		pathNormalizationNone, pathNormalizationBase, pathNormalizationMergeSlashes, pathNormalizationDecodeAndMergeSlashes)
}

var (
	errNULInPath     = errors.New("path contains an encoded or raw NUL (%00)")
	errInvalidEscape = errors.New("path contains an invalid percent-encoding")
)

// normalizeRequestPath applies h's path normalization to r, as Envoy does
// before routing, and returns the escaped path to route on. Only when the
// path changes does it rewrite r's URL (Path and RawPath together) and
// RequestURI, so the proxied request carries the normalized path, as
// Envoy forwards it; the query is kept as sent. A path that normalization
// rejects (%00) gives an error, for a 400.
//
// In every mode, a "#fragment" sent in the request target is cut off, as
// Istio configures Envoy to do (a '?' after the '#' is part of the
// fragment).
//
// It does not allocate for a path that is already normal, unless Go had
// to decode escapes in it.
func (h *Handler) normalizeRequestPath(r *http.Request) (string, error) {
	u := r.URL
	sent := sentPath(u)
	path, query, forceQuery := sent, u.RawQuery, u.ForceQuery
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, query, forceQuery = path[:i], "", false
	} else if i := strings.IndexByte(query, '#'); i >= 0 {
		query, forceQuery = query[:i], i == 0
	}
	if path != "" && path != "*" { // "" and "*": absolute-form without a path, CONNECT, OPTIONS *
		normalized, err := normalizePath(path, h.pathNormalization)
		if err != nil {
			return "", err
		}
		path = normalized
	}
	if path == sent && query == u.RawQuery {
		return sent, nil
	}
	decoded, err := url.PathUnescape(path)
	if err != nil {
		return "", errInvalidEscape
	}
	u.Path, u.RawPath = decoded, path
	u.RawQuery, u.ForceQuery = query, forceQuery
	r.RequestURI = u.RequestURI() // as Caddy's rewrite does; the :path header matcher reads it
	if c := h.logger.Check(zapcore.DebugLevel, "normalized request path"); c != nil {
		c.Write(zap.String("sent", sent), zap.String("normalized", path))
	}
	return path, nil
}

// sentPath is u's path as the client sent it, still escaped: the raw path
// when Go kept it, even with bytes Go would have escaped differently (a
// backslash must reach normalization as a backslash, not as %5C).
func sentPath(u *url.URL) string {
	if u.RawPath != "" {
		if p, err := url.PathUnescape(u.RawPath); err == nil && p == u.Path {
			return u.RawPath
		}
	}
	return u.EscapedPath()
}

// normalizePath normalizes the escaped path p (without query or fragment)
// as Envoy does in mode, and returns p itself when it is already normal.
//
// BASE is Chromium's URL path canonicalization, which Envoy's
// normalize_path runs:
//   - a path not starting with '/' or '\' gets a leading '/';
//   - '\' becomes '/';
//   - "." and ".." segments (also written %2e, %2E) are removed; ".."
//     never goes above the root, and a trailing "." or ".." leaves a
//     trailing '/';
//   - %XX of an unreserved character (ALPHA, DIGIT, '-', '.', '_', '~') is
//     decoded, once; other escapes are kept as sent, hex case included;
//   - bytes not allowed in a path (controls, space, '"', '#', '<', '>',
//     '?', '^', '`', '{', '|', '}', DEL, non-ASCII) are percent-encoded;
//   - a raw or encoded NUL rejects the request.
//
// MERGE_SLASHES then merges runs of '/', as Envoy's merge_slashes, and
// DECODE_AND_MERGE_SLASHES first decodes %2F/%2f to '/' and %5C/%5c to '\'.
func normalizePath(p string, mode pathNormalization) (string, error) {
	if mode == normalizeNone || isNormalPath(p, mode) {
		return p, nil
	}
	return rewritePath(p, mode)
}

// rewritePath is normalizePath without the fast path: it always builds a
// new path.
func rewritePath(p string, mode pathNormalization) (string, error) {
	if mode == normalizeDecodeAndMergeSlashes {
		p = decodeSlashes(p)
	}
	out, err := canonicalizePath(p)
	if err != nil {
		return "", err
	}
	if mode != normalizeBase {
		out = mergeSlashes(out)
	}
	return string(out), nil
}

// pathByteClass says how canonicalization treats a byte, as Chromium's
// kPathCharLookup (url_canon_path.cc) does.
type pathByteClass uint8

const (
	// pathBytePass is copied, and kept encoded when sent encoded.
	pathBytePass pathByteClass = iota
	// pathByteUnreserved is copied, and decoded when sent encoded.
	pathByteUnreserved
	// pathByteEscape is percent-encoded, and kept encoded when sent encoded.
	pathByteEscape
	// pathByteInvalid (NUL) rejects the path.
	pathByteInvalid
)

var pathByteClasses = func() (t [256]pathByteClass) {
	for c := 0; c < 256; c++ {
		switch {
		case c == 0:
			t[c] = pathByteInvalid
		case c < 0x20 || c >= 0x7f:
			t[c] = pathByteEscape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = pathByteUnreserved
		}
	}
	for _, c := range "-._~" {
		t[c] = pathByteUnreserved
	}
	for _, c := range " \"#%<>?\\^`{|}" {
		t[c] = pathByteEscape
	}
	return t
}()

// plainPathBytes are the bytes that canonicalization copies whatever
// surrounds them: those of pathBytePass and pathByteUnreserved but '/' and
// '.'.
var plainPathBytes = func() (t [256]bool) {
	for c, cl := range pathByteClasses {
		t[c] = (cl == pathBytePass || cl == pathByteUnreserved) && c != '/' && c != '.'
	}
	return t
}()

// isNormalPath reports whether normalizePath would return p unchanged. It
// is the fast path and does not allocate.
func isNormalPath(p string, mode pathNormalization) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	merge := mode >= normalizeMergeSlashes
	for i := 1; i < len(p); i++ {
		c := p[i]
		if plainPathBytes[c] {
			continue
		}
		switch c {
		case '/':
			if merge && p[i-1] == '/' {
				return false
			}
		case '.':
			if p[i-1] == '/' && isDotSegmentEnd(p[i+1:]) {
				return false
			}
		case '%':
			if i+2 >= len(p) {
				return false
			}
			v, ok := unhexPair(p[i+1], p[i+2])
			if !ok {
				return false
			}
			if cl := pathByteClasses[v]; cl == pathByteUnreserved || cl == pathByteInvalid {
				return false
			}
			if mode == normalizeDecodeAndMergeSlashes && (v == '/' || v == '\\') {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

// isDotSegmentEnd reports whether rest, what follows a '.' that starts a
// segment, makes that segment "." or "..".
func isDotSegmentEnd(rest string) bool {
	if rest != "" && rest[0] == '.' {
		rest = rest[1:]
	}
	return rest == "" || rest[0] == '/'
}

// decodeSlashes decodes %2F and %2f to '/', and %5C and %5c to '\'.
func decodeSlashes(p string) string {
	var b strings.Builder
	last := 0
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		var c byte
		switch {
		case p[i+1] == '2' && (p[i+2] == 'F' || p[i+2] == 'f'):
			c = '/'
		case p[i+1] == '5' && (p[i+2] == 'C' || p[i+2] == 'c'):
			c = '\\'
		default:
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(p))
		}
		b.WriteString(p[last:i])
		b.WriteByte(c)
		last = i + 3
		i += 2
	}
	if last == 0 {
		return p
	}
	b.WriteString(p[last:])
	return b.String()
}

// canonicalizePath is Chromium's CanonicalizePath (url_canon_path.cc,
// DoPath and DoPartialPath), which Envoy's normalize_path calls, except
// that an invalid escape ("%zz") is an error where Chromium copies it: Go's
// server already rejects such request targets with 400.
func canonicalizePath(p string) ([]byte, error) {
	out := make([]byte, 0, len(p)+1)
	if p == "" || !isSlash(p[0]) {
		out = append(out, '/')
	}
	for i := 0; i < len(p); i++ {
		if n := dotLen(p, i); n > 0 {
			if out[len(out)-1] != '/' {
				out = append(out, '.') // a dot inside a segment
				i += n - 1
				continue
			}
			kind, consumed := classifyAfterDot(p[i+n:])
			switch kind {
			case notADirectory:
				out = append(out, '.')
			case parentDirectory:
				out = backUpToPreviousSlash(out)
			}
			i += n + consumed - 1
			continue
		}
		switch c := p[i]; c {
		case '\\':
			out = append(out, '/')
		case '%':
			if i+2 >= len(p) {
				return nil, errInvalidEscape
			}
			v, ok := unhexPair(p[i+1], p[i+2])
			if !ok {
				return nil, errInvalidEscape
			}
			switch pathByteClasses[v] {
			case pathByteInvalid:
				return nil, errNULInPath
			case pathByteUnreserved:
				out = append(out, v)
			default:
				out = append(out, p[i:i+3]...) // hex case kept, as Chromium
			}
			i += 2
		default:
			switch pathByteClasses[c] {
			case pathByteInvalid:
				return nil, errNULInPath
			case pathByteEscape:
				out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			default:
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// dotKind is what a segment starting with a dot is (Chromium's
// DotDisposition).
type dotKind uint8

const (
	notADirectory dotKind = iota
	currentDirectory
	parentDirectory
)

// classifyAfterDot classifies the segment of a dot from rest, what follows
// that dot, and returns how many bytes of rest the segment takes (with its
// ending slash).
func classifyAfterDot(rest string) (dotKind, int) {
	if rest == "" {
		return currentDirectory, 0
	}
	if isSlash(rest[0]) {
		return currentDirectory, 1
	}
	if n := dotLen(rest, 0); n > 0 {
		after := rest[n:]
		if after == "" {
			return parentDirectory, n
		}
		if isSlash(after[0]) {
			return parentDirectory, n + 1
		}
	}
	return notADirectory, 0
}

// backUpToPreviousSlash drops the last segment of out, which ends with '/',
// keeping the slash before it; it never drops the leading '/'.
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	for i--; i > 0 && out[i] != '/'; i-- {
	}
	return out[:i+1]
}

// dotLen is the length of the dot at p[i]: 1 for '.', 3 for %2e or %2E,
// 0 if there is none.
func dotLen(p string, i int) int {
	if p[i] == '.' {
		return 1
	}
	if p[i] == '%' && i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E') {
		return 3
	}
	return 0
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// mergeSlashes is Envoy's PathTransformer::mergeSlashes: the non-empty
// segments joined by '/', with a leading and a trailing '/' when p has
// them. A path made only of slashes thus stays "//", as in Envoy.
func mergeSlashes(p []byte) []byte {
	if !bytes.Contains(p, []byte("//")) {
		return p
	}
	out := make([]byte, 0, len(p))
	if p[0] == '/' {
		out = append(out, '/')
	}
	first := true
	for seg := range bytes.SplitSeq(p, []byte("/")) {
		if len(seg) == 0 {
			continue
		}
		if !first {
			out = append(out, '/')
		}
		out = append(out, seg...)
		first = false
	}
	if p[len(p)-1] == '/' {
		out = append(out, '/')
	}
	return out
}

const upperHex = "0123456789ABCDEF"

// unhexPair decodes the two hex digits of a percent-encoding.
func unhexPair(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
