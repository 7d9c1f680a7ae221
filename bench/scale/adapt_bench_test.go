//go:build bench

package main

// The istio adapter on generated configs, in process, for a CPU profile of
// what `caddy adapt` spends its time on:
//
//	go test -tags bench -run '^$' -bench Adapt -benchtime 3x -cpuprofile adapt.pprof ./bench/scale
//	go tool pprof -top -cum bench/scale/scale.test adapt.pprof

import (
	"fmt"
	"testing"

	"github.com/caddy-istio/caddy-istio/adapters/istio"
)

func BenchmarkAdapt(b *testing.B) {
	g := genConfig{port: 18200, backends: "127.0.0.1:18080,127.0.0.1:18090"}
	for _, n := range []int{1000, 10000} {
		data, err := g.generate(n)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("vs=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := (istio.Adapter{}).Adapt(data, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
