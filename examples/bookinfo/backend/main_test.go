package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseInstance(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    instance
		wantErr bool
	}{
		{in: "reviews/v1=127.0.0.1:0", want: instance{"reviews", "v1", "127.0.0.1:0"}},
		{in: "productpage-v1=127.0.0.1:19080", want: instance{"productpage", "v1", "127.0.0.1:19080"}},
		{in: "ratings-v2-mysql=127.0.0.1:1", want: instance{"ratings", "v2-mysql", "127.0.0.1:1"}},
		{in: "cert-manager-resolver/v1=127.0.0.1:1", want: instance{"cert-manager-resolver", "v1", "127.0.0.1:1"}},
		{in: "reviews=127.0.0.1:1", wantErr: true},
		{in: "reviews/v1", wantErr: true},
		{in: "reviews/v1=nope", wantErr: true},
	} {
		got, err := parseInstance(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseInstance(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseInstance(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestHandlerReply(t *testing.T) {
	srv := httptest.NewServer(&handler{instance: instance{Service: "reviews", Version: "v2"}})
	defer srv.Close()

	for _, tc := range []struct {
		path       string
		wantStatus int
	}{
		{"/reviews/0?x=1", 200},
		{"/status/503", 503},
		{"/status/abc", 400},
		{"/delay/1ms", 200},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		req.Header.Set("End-User", "jason")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body reply
		decodeErr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.wantStatus)
		}
		if got := resp.Header.Get("x-bookinfo-version"); got != "v2" {
			t.Errorf("%s: x-bookinfo-version %q, want v2", tc.path, got)
		}
		if tc.wantStatus == 400 {
			continue
		}
		if decodeErr != nil {
			t.Fatalf("%s: %v", tc.path, decodeErr)
		}
		path, _, _ := strings.Cut(tc.path, "?")
		if body.Service != "reviews" || body.Version != "v2" || body.Path != path || body.Headers["end-user"] != "jason" {
			t.Errorf("%s: body %+v", tc.path, body)
		}
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(&handler{instance: instance{Service: "tornado", Version: "v1"}})
	defer srv.Close()

	conn, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	_, err = conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: tornado\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	// The example value of RFC 6455 section 1.3.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if got := resp.Header.Get("x-bookinfo-version"); got != "v1" {
		t.Errorf("x-bookinfo-version %q, want v1", got)
	}

	for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
		if err := writeMaskedFrame(conn, opText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		fin, opcode, payload, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if !fin || opcode != opText || !bytes.Equal(payload, []byte(msg)) {
			t.Errorf("echo of %d bytes: fin %v opcode %d, %d bytes", len(msg), fin, opcode, len(payload))
		}
	}
	if err := writeMaskedFrame(conn, opClose, []byte{0x03, 0xE8}); err != nil {
		t.Fatal(err)
	}
	if _, opcode, _, err := readFrame(br); err != nil || opcode != opClose {
		t.Errorf("close: opcode %d, %v", opcode, err)
	}
}

// writeMaskedFrame writes one client frame, masked as RFC 6455 requires.
func writeMaskedFrame(conn net.Conn, opcode byte, payload []byte) error {
	var buf bytes.Buffer
	if err := writeFrame(&buf, true, opcode, payload); err != nil {
		return err
	}
	frame := buf.Bytes()
	headLen := len(frame) - len(payload)
	mask := [4]byte{1, 2, 3, 4}
	out := append([]byte{}, frame[:headLen]...)
	out[1] |= 0x80
	out = append(out, mask[:]...)
	for i, b := range payload {
		out = append(out, b^mask[i%4])
	}
	_, err := conn.Write(out)
	return err
}
