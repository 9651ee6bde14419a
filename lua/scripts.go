package lua

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

//go:embed common.lua
var commonSource string

// newScript makes a script of common.lua's helpers followed by body. It runs
// with EVALSHA and falls back to EVAL (which reloads it) on NOSCRIPT, e.g.
// after a restart, a failover to a fresh replica or SCRIPT FLUSH.
func newScript(body string) *redis.Script {
	return redis.NewScript(commonSource + "\n" + body)
}
