package istioapp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// proxyLogger is the reverse_proxy handler's unexported logger field.
func proxyLogger(t *testing.T, h *reverseproxy.Handler) **zap.Logger {
	t.Helper()
	field := reflect.ValueOf(h).Elem().FieldByName("logger")
	if !field.IsValid() || field.Type() != reflect.TypeFor[*zap.Logger]() {
		t.Fatalf("reverseproxy.Handler has no logger *zap.Logger field: LazyProxyLogFields does nothing with this Caddy version")
	}
	return (**zap.Logger)(unsafe.Pointer(field.UnsafeAddr()))
}

// countingObject counts how often it is encoded.
type countingObject struct{ n *int }

func (o countingObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	*o.n++
	enc.AddString("method", "GET")
	return nil
}

func TestLazyProxyLogFields(t *testing.T) {
	for _, tc := range []struct {
		name        string
		level       zapcore.Level
		wantEncoded int
	}{
		{name: "debug off: fields never encoded", level: zapcore.InfoLevel, wantEncoded: 0},
		{name: "debug on: the same entry as With", level: zapcore.DebugLevel, wantEncoded: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// roundTrip logs as reverse_proxy's reverseProxy does for
			// every round trip, and returns what was written and how often
			// the request was encoded
			roundTrip := func(lazy bool) (string, int) {
				var out bytes.Buffer
				enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", NameKey: "logger", LevelKey: "level", EncodeLevel: zapcore.LowercaseLevelEncoder})
				h := new(reverseproxy.Handler)
				*proxyLogger(t, h) = zap.New(zapcore.NewCore(enc, zapcore.AddSync(&out), tc.level)).Named("proxy")
				if lazy {
					LazyProxyLogFields(h)
					LazyProxyLogFields(h) // a second call changes nothing
				}
				encoded := 0
				logger := (*proxyLogger(t, h)).With(zap.String("upstream", "127.0.0.1:1"), zap.Object("request", countingObject{&encoded}))
				if c := logger.Check(zapcore.DebugLevel, "upstream roundtrip"); c != nil {
					c.Write(zap.Int("status", 200))
				}
				logger.Debug("wrote header")
				return out.String(), encoded
			}
			eager, _ := roundTrip(false)
			lazy, encoded := roundTrip(true)
			if encoded != tc.wantEncoded {
				t.Errorf("request encoded %d times, want %d", encoded, tc.wantEncoded)
			}
			if lazy != eager {
				t.Errorf("lazy fields wrote\n%s\nwant, as With does,\n%s", lazy, eager)
			}
			if tc.wantEncoded > 0 && !strings.Contains(lazy, `"request":{"method":"GET"}`) {
				t.Errorf("entries without the request: %s", lazy)
			}
		})
	}
}

func TestLazyProxyLogFieldsNoLogger(t *testing.T) {
	LazyProxyLogFields(nil)
	h := new(reverseproxy.Handler)
	LazyProxyLogFields(h) // not provisioned: left as it is
	if *proxyLogger(t, h) != nil {
		t.Error("a logger was set on an unprovisioned handler")
	}
}
