package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/fsm/rules"
)

// adminTimeout bounds one admin command.
const adminTimeout = 15 * time.Second

// adminFlags are the flags every admin command takes (SPEC §2).
type adminFlags struct {
	addr, token string
	tls         clientTLSFlags
	tlsOption   client.Option
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "http://127.0.0.1:8000", "HTTP address of any cluster member [SLUICE_ADDR]")
	fs.StringVar(&f.token, "token", "", "admin bearer token [SLUICE_ADMIN_TOKEN]")
	f.tls.register(fs)
}

// parse parses args; a leading positional argument (sluice cluster remove ID
// --addr X) is allowed before the flags and returned with the rest.
func (f *adminFlags) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var lead []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		lead, args = args[:1], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	tokenGiven := false
	fs.Visit(func(fl *flag.Flag) { tokenGiven = tokenGiven || fl.Name == "token" })
	if !tokenGiven && f.token == "" {
		// The same variable configures serve's --admin-token.
		f.token = os.Getenv("SLUICE_ADMIN_TOKEN")
	}
	var err error
	if f.tlsOption, err = f.tls.option(); err != nil {
		fmt.Fprintln(fs.Output(), err)
		return nil, err
	}
	return append(lead, fs.Args()...), nil
}

func (f *adminFlags) client() *client.Client {
	return client.New(f.addr, client.WithToken(f.token), f.tlsOption)
}

// runCluster implements `sluice cluster status|remove ID`.
func runCluster(args []string, stdout, stderr io.Writer) int {
	return runGroup("cluster", args, stdout, stderr, runClusterSub)
}

func runClusterSub(sub string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster "+sub, stdout, stderr)
	var f adminFlags
	f.register(fs)
	asJSON := false
	if sub == "status" {
		fs.BoolVar(&asJSON, "json", false, "print the raw JSON answer")
	}
	rest, err := f.parse(fs, args)
	if err != nil {
		return flagExit(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	switch {
	case sub == "status" && len(rest) == 0:
		st, err := f.client().ClusterStatus(ctx)
		if err != nil {
			return adminFailed(stderr, "cluster status", err)
		}
		if asJSON {
			return printJSON(stdout, stderr, st)
		}
		fmt.Fprintf(stdout, "leader: %s\nterm:   %d\n\n", orNone(st.Leader), st.Term)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tHEALTH\tRAFT\tHTTP")
		for _, n := range st.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Role(), health(n.Healthy), n.RaftAddr, orNone(n.HTTPAddr))
		}
		tw.Flush()
		leases, err := f.client().Leases(ctx)
		if err != nil {
			return adminFailed(stderr, "cluster status (leases)", err)
		}
		printLeases(stdout, leases)
		return 0
	case sub == "remove" && len(rest) == 1:
		if err := f.client().RemoveNode(ctx, rest[0]); err != nil {
			return adminFailed(stderr, "cluster remove", err)
		}
		fmt.Fprintf(stdout, "removed %s\n", rest[0])
		return 0
	}
	printHelp(stderr, fs)
	return 2
}

// printLeases prints each rule's shares, one line per node; "withheld"
// marks a node the others keep out of their Redis rate (it may be in
// fallback).
func printLeases(w io.Writer, leases admin.Leases) {
	fmt.Fprintln(w, "\nleases:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tNODE\tSHARE\tEXPIRES IN")
	for _, rule := range slices.Sorted(maps.Keys(leases)) {
		for _, id := range slices.Sorted(maps.Keys(leases[rule])) {
			l := leases[rule][id]
			expires := "(floor only)"
			if l.ExpiresInMs > 0 {
				expires = (time.Duration(l.ExpiresInMs) * time.Millisecond).String()
			}
			if l.Withheld {
				expires += "\twithheld"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\n", rule, id, l.Share, expires)
		}
	}
	tw.Flush()
}

// adminFailed prints a refused admin call, one line per invalid field, and
// returns the exit status 1.
func adminFailed(stderr io.Writer, what string, err error) int {
	var verr *rules.ValidationError
	if errors.As(err, &verr) {
		fmt.Fprintf(stderr, "sluice %s: rules rejected:\n", what)
		for _, fe := range verr.Errors {
			fmt.Fprintf(stderr, "  %s\n", fe.Error())
		}
		return 1
	}
	fmt.Fprintf(stderr, "sluice %s: %v\n", what, err)
	return 1
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// health words the leader's view of a member: it answers raft heartbeats
// and reports demand, or it does not.
func health(healthy bool) string {
	if healthy {
		return "healthy"
	}
	return "unhealthy"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
