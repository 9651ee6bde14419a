// Command sluice is the Sluice binary: a node (serve) and the tools that talk
// to one (rules, cluster, check, bench). This package only parses flags and
// wires packages together; behaviour lives in node/, api/ and friends.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: sluice <command> [flags]

commands:
  serve                      run a node
  rules validate -f FILE     validate a rules file offline
  rules get | apply -f FILE  read / replace the cluster's rules (apply --dry-run: preview)
  rules diff -f FILE         print what applying FILE would change
  cluster status | remove ID show members / remove a node
  check k=v ...              one decision (exit 0 allowed, 2 denied)
  bench [flags]              load generator: table, JSON and chart (exit 3 if a limit broke)
  health [--ready]           exit 0 iff the node's /healthz (or /readyz) answers 200
  top [--once]               who is being limited: rates and top denied keys, cluster-wide

Every flag also reads SLUICE_<FLAG_IN_UPPER_SNAKE> from the environment; the flag wins.
Run "sluice <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(rest, stdout, stderr)
	case "rules":
		return runRules(rest, stdout, stderr)
	case "cluster":
		return runCluster(rest, stdout, stderr)
	case "check":
		return runCheck(rest, stdout, stderr)
	case "bench":
		return runBench(rest, stdout, stderr)
	case "health":
		return runHealth(rest, stdout, stderr)
	case "top":
		return runTop(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func runRules(args []string, stdout, stderr io.Writer) int {
	return runGroup("rules", args, stdout, stderr, func(sub string, args []string, stdout, stderr io.Writer) int {
		if sub == "validate" {
			return runRulesValidate(args, stdout, stderr)
		}
		return runRulesRemote(sub, args, stdout, stderr)
	})
}
