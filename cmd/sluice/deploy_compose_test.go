package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   any               `yaml:"depends_on"`
}

// dependsOn lists the services s waits for, in either compose syntax.
func (s composeService) dependsOn() []string {
	var names []string
	switch d := s.DependsOn.(type) {
	case []any:
		for _, n := range d {
			names = append(names, n.(string))
		}
	case map[string]any:
		for n := range d {
			names = append(names, n)
		}
	}
	return names
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readRepoFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// The compose stack wires what really exists: serve flags and SLUICE_
// variables the binary accepts, ports that match the listen addresses, joins
// and Redis seeds that name real services, a Redis Cluster job that creates
// the cluster from all six nodes, and mounts of files in this repository.
func TestComposeStack(t *testing.T) {
	c := loadCompose(t)
	flags := serveFlagNames(t)
	dataDir := imageDataDir(t)

	var sluices, redises []string
	for name, s := range c.Services {
		switch {
		case s.Build != nil:
			sluices = append(sluices, name)
		case strings.HasPrefix(s.Image, "redis:") && slices.Contains(s.Command, "--cluster-enabled"):
			redises = append(redises, name)
		}
	}
	slices.Sort(sluices)
	if len(sluices) != 3 || len(redises) != 6 {
		t.Fatalf("want 3 sluice and 6 Redis Cluster services, got %v and %v", sluices, redises)
	}

	bootstrappers := 0
	hostPorts := map[string]string{}
	for _, name := range sluices {
		s := c.Services[name]
		where := "docker-compose.yml " + name
		set := serveSettings(t, where, flags, s.Environment, s.Command)
		httpPort := portOf(t, where+" --http-addr", set["http-addr"])
		raftPort := portOf(t, where+" --raft-addr", set["raft-addr"])
		if host, port, _ := net.SplitHostPort(set["raft-advertise"]); host != name || port != raftPort {
			t.Errorf("%s: --raft-advertise %q; want %s:%s", where, set["raft-advertise"], name, raftPort)
		}
		for _, p := range s.Ports {
			host, container, _ := strings.Cut(p, ":")
			if container != httpPort {
				t.Errorf("%s: publishes container port %s; the node listens on %s", where, container, httpPort)
			}
			hostPorts[host] = name
		}
		if set["join"] == "" {
			bootstrappers++
		}
		for _, target := range splitList(set["join"]) {
			host, port, _ := net.SplitHostPort(target)
			if !slices.Contains(sluices, host) || port != httpPort {
				t.Errorf("%s: --join %s is not another node's HTTP address", where, target)
			}
		}
		for _, seed := range splitList(set["redis"]) {
			host, port, _ := net.SplitHostPort(seed)
			if !slices.Contains(redises, host) || port != "6379" {
				t.Errorf("%s: --redis seed %s is not a Redis Cluster node", where, seed)
			}
		}
		if set["admin-token"] == "" {
			t.Errorf("%s: no admin token: joins between containers are not loopback and would be refused", where)
		}
		if !slices.Contains(s.dependsOn(), "redis-cluster-init") {
			t.Errorf("%s: does not wait for the Redis Cluster to be created", where)
		}
		mountsData := slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+dataDir) })
		if !mountsData {
			t.Errorf("%s: no volume on the image's data dir %s; raft state would not survive", where, dataDir)
		}
	}
	if bootstrappers != 1 {
		t.Errorf("%d nodes without --join; exactly one must bootstrap", bootstrappers)
	}
	if hostPorts["8000"] == "" {
		t.Errorf("no node on localhost:8000: `curl localhost:8000/ping` would fail")
	}

	init := c.Services["redis-cluster-init"]
	script := strings.Join(init.Command, " ")
	for _, r := range redises {
		if !strings.Contains(script, r+":6379") || !slices.Contains(init.dependsOn(), r) {
			t.Errorf("redis-cluster-init does not wait for and include %s", r)
		}
	}
	if !strings.Contains(script, "--cluster-replicas 1") {
		t.Errorf("redis-cluster-init does not give every master a replica: %s", script)
	}

	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts undeclared volume %s", name, src)
			}
		}
	}
}

// Prometheus (checked by promtool) scrapes every node on its HTTP port, and
// Grafana's provisioning points at that Prometheus and at the mounted
// dashboards.
func TestComposeMonitoring(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install prometheus (.ci/run installs it)")
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(repoRoot, "deploy/prometheus/prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	c := loadCompose(t)
	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/prometheus/prometheus.yml"), &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scraped[target] = sc.MetricsPath == "/metrics"
			}
		}
	}
	for name, s := range c.Services {
		if s.Build == nil {
			continue
		}
		target := name + ":" + portOf(t, name, s.Environment["SLUICE_HTTP_ADDR"])
		if !scraped[target] {
			t.Errorf("Prometheus does not scrape %s/metrics", target)
		}
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/grafana/provisioning/datasources/prometheus.yml"), &ds); err != nil {
		t.Fatal(err)
	}
	promPorts := c.Services["prometheus"].Ports
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" ||
		len(promPorts) != 1 || ds.Datasources[0].URL != "http://prometheus:"+strings.Split(promPorts[0], ":")[1] {
		t.Errorf("Grafana datasource %+v does not point at the prometheus service (ports %v)", ds.Datasources, promPorts)
	}

	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/grafana/provisioning/dashboards/sluice.yml"), &providers); err != nil {
		t.Fatal(err)
	}
	grafana := c.Services["grafana"]
	mounts := map[string]string{} // container path → repo path
	for _, v := range grafana.Volumes {
		parts := strings.Split(v, ":")
		mounts[parts[1]] = parts[0]
	}
	if mounts["/etc/grafana/provisioning"] != "./deploy/grafana/provisioning" {
		t.Errorf("Grafana does not mount the provisioning directory: %v", grafana.Volumes)
	}
	for _, p := range providers.Providers {
		src := mounts[p.Options.Path]
		if src == "" {
			t.Errorf("dashboard provider path %s is not mounted", p.Options.Path)
			continue
		}
		if _, err := os.Stat(filepath.Join(repoRoot, src, "sluice.json")); err != nil {
			t.Errorf("dashboard not where the provider looks: %v", err)
		}
	}
	home := grafana.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
	dir, file := filepath.Split(home)
	if src := mounts[strings.TrimSuffix(dir, "/")]; src == "" || file != "sluice.json" {
		t.Errorf("home dashboard %s is not in a mounted directory", home)
	}
}
