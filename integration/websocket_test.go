package integration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tornadoService is the Service of istio/istio samples/websockets/app.yaml
// (not in the corpus, which keeps only route.yaml): port 8888 "http",
// selector app: tornado.
const tornadoService = `apiVersion: v1
kind: Service
metadata:
  name: tornado
  labels:
    app: tornado
    service: tornado
spec:
  ports:
  - port: 8888
    name: http
  selector:
    app: tornado
`

// websockets/route.yaml: a WebSocket upgrade passes through the gateway
// unchanged and messages flow both ways. The Gateway's port 80 is rewritten
// to a free port.
func TestWebSocketThroughGateway(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "tornado/v1")
	port := freePort(t)
	route := withGatewayPort(t, corpus(t, "istio-samples/websockets/route.yaml"), 80, port)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddy(t, joinDocs(tornadoService, route, workloadEntries(t, b)), addr)

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))

	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: tornado.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("x-bookinfo-service") != "tornado" {
		t.Fatalf("handshake: status %d, x-bookinfo-service %q; want 101 from tornado", resp.StatusCode, resp.Header.Get("x-bookinfo-service"))
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Errorf("Upgrade header %q, want websocket", resp.Header.Get("Upgrade"))
	}

	for _, msg := range []string{"hello tornado", strings.Repeat("0123456789", 7000)} {
		if err := writeClientFrame(conn, 0x1, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		opcode, payload, err := readServerFrame(br)
		if err != nil {
			t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
		}
		if opcode != 0x1 || !bytes.Equal(payload, []byte(msg)) {
			t.Errorf("echo of %d bytes: opcode %d, %d bytes back", len(msg), opcode, len(payload))
		}
	}
	if err := writeClientFrame(conn, 0x8, []byte{0x03, 0xE8}); err != nil {
		t.Fatal(err)
	}
	if opcode, _, err := readServerFrame(br); err != nil || opcode != 0x8 {
		t.Errorf("close: opcode %d, %v; want the close echoed", opcode, err)
	}
}

// writeClientFrame writes one final, masked client frame (RFC 6455 5.2).
func writeClientFrame(w io.Writer, opcode byte, payload []byte) error {
	frame := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	case n <= 0xFFFF:
		frame = append(frame, 0x80|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	default:
		frame = append(frame, 0x80|127)
		frame = binary.BigEndian.AppendUint64(frame, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	frame = append(frame, mask[:]...)
	for i, c := range payload {
		frame = append(frame, c^mask[i%4])
	}
	_, err := w.Write(frame)
	return err
}

// readServerFrame reads one unmasked server frame.
func readServerFrame(r io.Reader) (opcode byte, payload []byte, err error) {
	var head [2]byte
	if _, err = io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	opcode = head[0] & 0x0F
	length := uint64(head[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if head[1]&0x80 != 0 || length > 1<<20 {
		return 0, nil, fmt.Errorf("unexpected frame header %x (length %d)", head, length)
	}
	payload = make([]byte, length)
	_, err = io.ReadFull(r, payload)
	return opcode, payload, err
}
