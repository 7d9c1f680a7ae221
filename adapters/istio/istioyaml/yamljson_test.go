package istioyaml

import "testing"

func TestYAMLToTreeMatchesYAMLToJSON(t *testing.T) {
	docs := []string{
		"",
		"# only a comment\n",
		"~\n",
		"a: 1\nb: -2\nc: 9223372036854775807\nd: 18446744073709551615\ne: 100000000000000000000\n",
		"f: 1.5\ng: 90.0\nh: -0.0\ni: 1e-7\nj: 1e21\nk: 123456789.123456789\nl: 0.000001\n",
		"octal: 0755\nhex: 0x1F\nbinint: 0b101\nsexagesimal: 1:20\n",
		"y: yes\nn: no\non: on\noff: Off\nt: True\nnull1: null\nnull2: ~\nnull3:\n",
		"ts: 2001-12-14t21:59:43.10-05:00\ndate: 2002-12-14\n",
		"bin: !!binary aGVsbG8=\nstr: !!str 123\nint: !!int \"7\"\n",
		"? [a, b]\n: c\n",
		"1: int key\n1.5: float key\ntrue: bool key\n.inf: inf key\n",
		"inf: .inf\n",
		"nan: .nan\n",
		"base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
		"list: [1, [2, [3, {a: b}]], {}]\n",
		"bad: \"\\xff\\xfe ok\"\n",
		"invalid-utf8: !!binary //5hYv8=\n!!binary //4=: key\n",
		"raw: \xff\xfe\n",
		"html: \"<a href='x'>&</a>\"\nsep: \"\\u2028\"\n",
		"- a\n- b\n",
		"just a string\n",
		"a: [1, 2\n",
		"a: b\n\tc: d\n",
		"a: &x [*x]\n",
	}
	for _, doc := range docs {
		if err := checkTreeAgainstYAMLToJSON([]byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
	// Every document of the corpus too.
	for _, sub := range []string{"istio-samples", "istio-invalid"} {
		for _, path := range corpusFiles(t, corpusDir(t, sub)) {
			data := readFile(t, path)
			for _, c := range splitDocuments(data) {
				if err := checkTreeAgainstYAMLToJSON(c.data); err != nil {
					t.Errorf("%s line %d: %v", path, c.firstLine, err)
				}
			}
		}
	}
}
