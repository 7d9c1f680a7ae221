//go:build bench

package main

// The istio adapter on generated configs, in process, for a CPU profile of
// what `caddy adapt` spends its time on:
//
//	go test -tags bench -run '^$' -bench Adapt -benchtime 3x -cpuprofile adapt.pprof ./bench/scale
//	go tool pprof -top -cum bench/scale/scale.test adapt.pprof

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

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

// BenchmarkAdaptPhases times the steps of Adapt on 10,000 VirtualServices
// (decode and validate, translate, encode), each reported as s/op of its
// own:
//
//	go test -tags bench -run '^$' -bench AdaptPhases -benchtime 3x ./bench/scale
func BenchmarkAdaptPhases(b *testing.B) {
	g := genConfig{port: 18200, backends: "127.0.0.1:18080,127.0.0.1:18090"}
	data, err := g.generate(10000)
	if err != nil {
		b.Fatal(err)
	}
	var decode, translate, encode time.Duration
	for b.Loop() {
		t0 := time.Now()
		objs, _, err := istio.DecodeAndValidate("", data, "")
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cfg, _ := istio.Translate(objs, istio.Options{})
		t2 := time.Now()
		if _, err := json.Marshal(cfg); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		decode += t1.Sub(t0)
		translate += t2.Sub(t1)
		encode += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(decode.Seconds()/n, "decode-s/op")
	b.ReportMetric(translate.Seconds()/n, "translate-s/op")
	b.ReportMetric(encode.Seconds()/n, "encode-s/op")
}
