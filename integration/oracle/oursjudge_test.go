package oracle

import (
	"strings"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/adapters/istio/validation"
)

// judgeOurs returns caddy-istio's verdict on one document: decode, then
// validate every object; any error rejects.
func judgeOurs(doc []byte) verdict {
	objs, warnings, errs := istioyaml.Decode("input.yaml", doc, istioyaml.Options{DefaultNamespace: defaultNamespace})
	if len(errs) > 0 {
		return verdict{message: "decode: " + joinProblems(errs)}
	}
	if len(objs) == 0 {
		return verdict{message: "decode: no object (warnings: " + joinProblems(warnings) + ")"}
	}
	for _, obj := range objs {
		w, errs := validation.Validate(obj)
		if len(errs) > 0 {
			return verdict{message: "validation: " + joinProblems(errs)}
		}
		warnings = append(warnings, w...)
	}
	return verdict{accepted: true, message: joinProblems(warnings)}
}

func joinProblems(ps []istioyaml.Problem) string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "; ")
}
