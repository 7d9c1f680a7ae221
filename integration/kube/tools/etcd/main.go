// Command etcd is etcd v3.7.3 built from the Go module proxy: `go install` of
// go.etcd.io/etcd/server/v3 is refused (its go.mod has replace directives), so
// this main calls etcdmain.Main as etcd's own main does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
