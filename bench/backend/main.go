// Command backend is the benchmark's upstream: a minimal HTTP/1.1 server that
// answers every request with a fixed body (1 KiB by default) over keep-alive
// connections, on one or more loopback listeners. GET /__count returns how
// many requests each listener served, so bench/run.sh can check the route's
// weighted split.
//
//	backend -addrs 127.0.0.1:18080,127.0.0.1:18090 -size 1024
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

func main() {
	addrs := flag.String("addrs", "127.0.0.1:18080", "comma-separated listen addresses")
	size := flag.Int("size", 1024, "response body size in bytes")
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
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{contentLength}
			_, _ = w.Write(body)
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Fatal(http.Serve(ln, handler))
		}()
	}
	log.Printf("backend: serving %d bytes on %s", len(body), *addrs)
	wg.Wait()
}
