// compose-check loads a Compose file the way `docker compose config` does -- compose-go's
// LoadProject with the process environment and the project's .env file: interpolation, the
// Compose Specification JSON Schema, normalization and consistency checks -- and prints the
// resolved project as JSON. Used by tests/unit/test_compose.py where `docker compose` is missing.
// (compose-go's own cmd drops the environment before interpolating, so it cannot be used.)
//
//	go run . [-env-file FILE] COMPOSE_FILE
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	envFile := flag.String("env-file", "", "read variables from this file instead of the project's .env")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env-file FILE] COMPOSE_FILE")
		os.Exit(2)
	}
	options := []cli.ProjectOptionsFn{cli.WithOsEnv}
	if *envFile != "" {
		options = append(options, cli.WithEnvFiles(*envFile))
	} else {
		options = append(options, cli.WithEnvFiles())
	}
	options = append(options, cli.WithDotEnv, cli.WithInterpolation(true), cli.WithResolvedPaths(true),
		cli.WithNormalization(true), cli.WithConsistency(true))
	projectOptions, err := cli.NewProjectOptions(flag.Args(), options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := projectOptions.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
