package oracle

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	showDocs = flag.Bool("oracle.docs", false, "print the full document of each disagreement")
	dumpDir  = flag.String("oracle.dump", "", "write each disagreeing document to this directory")
)

// result is both verdicts on one input.
type result struct {
	in    input
	istio verdict
	ours  verdict
}

func (r result) agree() bool { return r.istio.accepted == r.ours.accepted }

// TestAgreesWithIstio puts every input to Istio (CRD schema + CEL, then
// pkg/config/validation) and to caddy-istio (istioyaml.Decode, then
// validation.Validate) and fails on any accept/reject disagreement.
func TestAgreesWithIstio(t *testing.T) {
	start := time.Now()
	istio, err := newIstioJudge()
	if err != nil {
		t.Fatal(err)
	}
	corpus, err := loadCorpus()
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := loadInvalid()
	if err != nil {
		t.Fatal(err)
	}
	bases, err := loadBases(corpus)
	if err != nil {
		t.Fatal(err)
	}
	muts, err := generateMutations(bases)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() && len(muts) > 500 {
		// Every n-th mutation, so that all bases and kinds stay represented.
		step := len(muts) / 500
		var sample []mutation
		for i := 0; i < len(muts) && len(sample) < 500; i += step {
			sample = append(sample, muts[i])
		}
		muts = sample
	}

	var inputs []input
	accepted := true
	for _, d := range corpus {
		inputs = append(inputs, input{group: "corpus", name: d.name, doc: d.yaml, wantAccepted: &accepted})
	}
	inputs = append(inputs, invalid...)
	for _, m := range muts {
		inputs = append(inputs, input{group: "mutations", name: m.desc, doc: m.doc})
	}
	t.Logf("inputs ready in %v: %d corpus objects, %d invalid cases, %d mutations of %d base documents",
		time.Since(start).Round(time.Millisecond), len(corpus), len(invalid), len(muts), len(bases))

	start = time.Now()
	results := judgeAll(istio, inputs)
	t.Logf("judged in %v", time.Since(start).Round(time.Millisecond))

	type tally struct{ agree, total, istioAccepted int }
	groups := map[string]*tally{"corpus": {}, "invalid": {}, "mutations": {}}
	var all tally
	var disagreements []result
	for _, r := range results {
		g := groups[r.in.group]
		g.total++
		all.total++
		if r.istio.accepted {
			g.istioAccepted++
			all.istioAccepted++
		}
		if r.agree() {
			g.agree++
			all.agree++
		} else {
			disagreements = append(disagreements, r)
		}
		// The fixed inputs also pin Istio's verdict, so that a change of
		// oracle version or harness does not go unnoticed.
		if r.in.wantAccepted != nil && r.istio.accepted != *r.in.wantAccepted {
			t.Errorf("%s %s: Istio %v, expected accepted=%v", r.in.group, r.in.name, r.istio, *r.in.wantAccepted)
		}
	}

	for i, r := range disagreements {
		msg := fmt.Sprintf("disagreement %d [%s] %s\n    istio: %v\n    ours:  %v", i+1, r.in.group, r.in.name, r.istio, r.ours)
		if *showDocs {
			msg += "\n    document:\n" + indent(string(r.in.doc), "      ")
		}
		t.Error(msg)
		if *dumpDir != "" {
			dump(t, i+1, r)
		}
	}
	pct := func(a, b int) float64 {
		if b == 0 {
			return 100
		}
		return 100 * float64(a) / float64(b)
	}
	t.Logf("agreement: %d/%d (%.2f%%) corpus %d/%d invalid %d/%d mutations %d/%d (Istio accepted %d of the mutations, rejected %d)",
		all.agree, all.total, pct(all.agree, all.total),
		groups["corpus"].agree, groups["corpus"].total,
		groups["invalid"].agree, groups["invalid"].total,
		groups["mutations"].agree, groups["mutations"].total,
		groups["mutations"].istioAccepted, groups["mutations"].total-groups["mutations"].istioAccepted)
}

// judgeAll runs both judges on every input, in parallel, keeping order.
func judgeAll(istio *istioJudge, inputs []input) []result {
	results := make([]result, len(inputs))
	parallel(len(inputs), func(i int) {
		in := inputs[i]
		results[i] = result{in: in, istio: istio.judge(in.doc), ours: judgeOurs(in.doc)}
	})
	return results
}

// parallel calls f(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				f(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

func dump(t *testing.T, n int, r result) {
	if err := os.MkdirAll(*dumpDir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("# %s\n# istio: %v\n# ours:  %v\n%s", r.in.name, r.istio, r.ours, r.in.doc)
	name := filepath.Join(*dumpDir, fmt.Sprintf("disagreement-%04d.yaml", n))
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
