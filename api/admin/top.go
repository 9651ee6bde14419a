package admin

import "github.com/sluicehq/sluice/buckets/hitters"

// RuleHitters is one rule's heavy hitters over one window on one node: its
// admitted and denied cost, each a mergeable summary with error bounds.
type RuleHitters struct {
	Rule     string          `json:"rule"`
	Admitted hitters.Summary `json:"admitted"`
	Denied   hitters.Summary `json:"denied"`
}

// NodeTop is the body of GET /v1/internal/top: one node's own summaries,
// which the node answering GET /v1/top merges with the other members'.
type NodeTop struct {
	Node  string        `json:"node"`
	Rules []RuleHitters `json:"rules"`
}

// Top is the body of GET /v1/top: the keys with the most cost on the By
// side, per rule, over the whole cluster (or one node with scope=local).
type Top struct {
	Window string `json:"window"`
	By     string `json:"by"`
	K      int    `json:"k"`
	// Nodes answered; Missing are members that did not answer in time, so
	// their traffic is not in the counts.
	Nodes   []string  `json:"nodes"`
	Missing []string  `json:"missing"`
	Rules   []RuleTop `json:"rules"`
}

// RuleTop is one rule in GET /v1/top: its exact totals over the window and
// its top keys, sorted by the By side, largest first.
type RuleTop struct {
	Rule     string   `json:"rule"`
	Admitted int64    `json:"admitted"`
	Denied   int64    `json:"denied"`
	Keys     []KeyTop `json:"keys"`
}

// KeyTop is one key's cost in GET /v1/top. Admitted and Denied are upper
// bounds: each true cost lies in [value-Error, value]. Nodes are the
// members whose summaries list the key.
type KeyTop struct {
	Key      string   `json:"key"`
	Admitted int64    `json:"admitted"`
	Denied   int64    `json:"denied"`
	Error    int64    `json:"error"`
	Nodes    []string `json:"nodes"`
}
