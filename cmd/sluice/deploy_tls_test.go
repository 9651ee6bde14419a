package main

import (
	"crypto/x509"
	"encoding/pem"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/sluicehq/sluice/transport"
)

// TestComposeTLSVariant: deploy/compose-tls.yml gives every node of
// docker-compose.yml HTTPS and node TLS through SLUICE_ variables the binary
// accepts, mounts the directory deploy/make-certs.sh fills, and that script's
// certificates load, chain to its CA and name the hosts the nodes dial each
// other by (the compose service names) and the health check uses.
func TestComposeTLSVariant(t *testing.T) {
	base := loadCompose(t)
	var tlsFile struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/compose-tls.yml"), &tlsFile); err != nil {
		t.Fatalf("deploy/compose-tls.yml: %v", err)
	}
	dir := t.TempDir()
	names := slices.Sorted(maps.Keys(tlsFile.Services))
	script := exec.Command("bash", append([]string{filepath.Join(repoRoot, "deploy/make-certs.sh"), dir}, names...)...)
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, out)
	}
	flags := serveFlagNames(t)
	for _, name := range names {
		where := "deploy/compose-tls.yml " + name
		s := tlsFile.Services[name]
		b, ok := base.Services[name]
		if !ok || b.Build == nil {
			t.Errorf("%s: not a sluice service of docker-compose.yml", where)
			continue
		}
		env := maps.Clone(b.Environment)
		maps.Copy(env, s.Environment)
		set := serveSettings(t, where, flags, env, b.Command)
		if set["admin-token"] == "" {
			t.Errorf("%s: the token of docker-compose.yml is lost", where)
		}
		if !slices.Contains(s.Volumes, "./deploy/tls:/etc/sluice/tls:ro") {
			t.Errorf("%s: volumes %v do not mount deploy/tls at /etc/sluice/tls", where, s.Volumes)
		}
		local := func(flag string) string {
			path, ok := strings.CutPrefix(set[flag], "/etc/sluice/tls/")
			if !ok {
				t.Errorf("%s: --%s %q is not in the mounted directory", where, flag, set[flag])
			}
			return filepath.Join(dir, path)
		}
		for _, flag := range []string{"http", "node"} {
			files := transport.CertFiles{Cert: local(flag + "-cert"), Key: local(flag + "-key"), CA: local("node-ca-cert")}
			if _, err := transport.NewCertSource(files); err != nil {
				t.Errorf("%s: --%s-cert does not load: %v", where, flag, err)
			}
		}
		verifyCert(t, where, local("node-cert"), local("node-ca-cert"), name, "localhost")
		health := strings.Join(s.Healthcheck.Test, " ")
		if !strings.Contains(health, "https://localhost:8000") || !strings.Contains(health, "--ca-cert /etc/sluice/tls/ca.pem") {
			t.Errorf("%s: health check %q does not speak HTTPS with the CA", where, health)
		}
	}
	if len(names) != 3 {
		t.Errorf("TLS variant covers %v; want all three nodes", names)
	}
}

// verifyCert checks certFile chains to caFile for every host, as a server
// and as a client.
func verifyCert(t *testing.T, where, certFile, caFile string, hosts ...string) {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots, _, err := transport.LoadCertPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range hosts {
		opts := x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("%s: certificate not valid for %s: %v", where, host, err)
		}
	}
}
