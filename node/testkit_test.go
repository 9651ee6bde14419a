package node

import "github.com/sluicehq/sluice/node/internal/testkit"

// Short names for the helpers shared with the engine's tests.
var (
	waitFor   = testkit.WaitFor
	mustRules = testkit.MustRules
	attrs     = testkit.Attrs
	dialRedis = testkit.DialRedis
	runEngine = testkit.RunEngine
)
