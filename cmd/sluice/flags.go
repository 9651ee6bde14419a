package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// parseFlags parses args, then fills every flag not given on the command line
// from SLUICE_<FLAG_IN_UPPER_SNAKE> (SPEC §2: the flag wins over the env).
// -h/--help prints the help to stdout and returns flag.ErrHelp; a usage
// error is printed to stderr with a pointer to the help (see flagExit).
func parseFlags(fs *flag.FlagSet, args []string) error {
	help := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = help
	switch {
	case errors.Is(err, flag.ErrHelp):
		help()
		return err
	case err != nil:
		fmt.Fprintf(fs.Output(), "run \"sluice %s -h\" for its flags\n", fs.Name())
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("%s: %w", env, setErr)
			}
		}
	})
	return err
}

// envName maps a flag name to its environment variable: "node-id" → SLUICE_NODE_ID.
func envName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
