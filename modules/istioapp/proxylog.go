package istioapp

import (
	"reflect"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// LazyProxyLogFields makes the fields that a provisioned reverse_proxy
// handler adds to its logger for every upstream round trip (upstream,
// duration and the whole request with its headers, through
// zap.Logger.With) encoded only when an entry is written with them. zap's
// With encodes them at once, even when no entry is enabled: in the Istio
// bench that was about 6 % of the proxy's CPU, for debug entries that are
// off unless the log level is DEBUG. The entries that are written are the
// same as before: the fields are encoded at the first enabled entry, which
// for the debug entry "upstream roundtrip" is right after With.
//
// reverse_proxy keeps its logger in an unexported field, which is replaced
// here by the same logger with a core whose With is zap's lazy With. If a
// Caddy version renames the field or changes its type, h is left as it is.
// Call it after h.Provision.
func LazyProxyLogFields(h *reverseproxy.Handler) {
	if h == nil {
		return
	}
	field := reflect.ValueOf(h).Elem().FieldByName("logger")
	if !field.IsValid() || field.Type() != reflect.TypeFor[*zap.Logger]() {
		return
	}
	logger := (**zap.Logger)(unsafe.Pointer(field.UnsafeAddr()))
	if *logger == nil {
		return
	}
	*logger = (*logger).WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		if _, lazy := c.(lazyFieldsCore); lazy {
			return c
		}
		return lazyFieldsCore{c}
	}))
}

// lazyFieldsCore is a core whose With defers the encoding of the fields
// to the first entry that is written (zapcore.NewLazyWith); the level
// check stays that of the wrapped core, so a disabled entry encodes
// nothing.
type lazyFieldsCore struct{ zapcore.Core }

// With returns a core that adds fields to its entries once one is
// written.
func (c lazyFieldsCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return zapcore.NewLazyWith(c.Core, fields)
}
