package main

import (
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/sluicehq/sluice/fsm/rules"
)

type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sLabelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sConfigMap struct {
	Metadata k8sMeta           `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

type k8sService struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sStatefulSet struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		ServiceName         string           `yaml:"serviceName"`
		Replicas            int              `yaml:"replicas"`
		PodManagementPolicy string           `yaml:"podManagementPolicy"`
		Selector            k8sLabelSelector `yaml:"selector"`
		Template            struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				SecurityContext struct {
					RunAsUser int `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata k8sMeta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Spec struct {
		MaxUnavailable int              `yaml:"maxUnavailable"`
		Selector       k8sLabelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// k8sManifests reads deploy/kubernetes/sluice.yaml, one object per kind
// (Services by name).
type k8sManifests struct {
	configMaps map[string]k8sConfigMap
	services   map[string]k8sService
	sts        k8sStatefulSet
	pdb        k8sPDB
}

func loadK8s(t *testing.T) k8sManifests {
	t.Helper()
	m := k8sManifests{configMaps: map[string]k8sConfigMap{}, services: map[string]k8sService{}}
	kinds := map[string]int{}
	for _, doc := range strings.Split(string(readRepoFile(t, "deploy/kubernetes/sluice.yaml")), "\n---\n") {
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("sluice.yaml: %v", err)
		}
		kinds[head.Kind]++
		var err error
		switch head.Kind {
		case "ConfigMap":
			var cm k8sConfigMap
			err = yaml.Unmarshal([]byte(doc), &cm)
			m.configMaps[cm.Metadata.Name] = cm
		case "Service":
			var s k8sService
			err = yaml.Unmarshal([]byte(doc), &s)
			m.services[s.Metadata.Name] = s
		case "StatefulSet":
			err = yaml.Unmarshal([]byte(doc), &m.sts)
		case "PodDisruptionBudget":
			err = yaml.Unmarshal([]byte(doc), &m.pdb)
		default:
			t.Fatalf("sluice.yaml: unexpected kind %q", head.Kind)
		}
		if err != nil {
			t.Fatalf("sluice.yaml %s: %v", head.Kind, err)
		}
	}
	if kinds["StatefulSet"] != 1 || kinds["PodDisruptionBudget"] != 1 || kinds["Service"] != 2 || kinds["ConfigMap"] != 1 {
		t.Fatalf("sluice.yaml kinds %v; want a StatefulSet, a PDB, two Services, a ConfigMap", kinds)
	}
	return m
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// The manifests fit the binary and each other: serve settings the binary
// accepts, stable identities through the headless Service, the same --join
// for every pod with the first pod bootstrapping, probes on /healthz and
// /readyz, the data dir on a volume, rules from the ConfigMap, selectors that
// select the pods, and a PDB that keeps a raft majority.
func TestKubernetesManifests(t *testing.T) {
	m := loadK8s(t)
	flags := serveFlagNames(t)
	sts := m.sts
	pod := sts.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	env := map[string]string{}
	for _, e := range c.Env {
		for _, ref := range envRef.FindAllStringSubmatch(e.Value, -1) {
			if _, ok := env[ref[1]]; !ok {
				t.Errorf("env %s uses $(%s) before it is defined", e.Name, ref[1])
			}
		}
		if e.Value == "" && e.ValueFrom == nil {
			t.Errorf("env %s has no value", e.Name)
		}
		env[e.Name] = e.Value
	}
	set := serveSettings(t, "StatefulSet", flags, env, c.Args)
	if set["admin-token"] == "" && !hasEnvFrom(c, "SLUICE_ADMIN_TOKEN") {
		t.Errorf("no admin token: joins between pods would be refused")
	}

	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	httpPort := portOf(t, "--http-addr", set["http-addr"])
	raftPort := portOf(t, "--raft-addr", set["raft-addr"])
	if ports["http"] != httpPort || ports["raft"] != raftPort {
		t.Errorf("container ports %v; the node listens on http %s, raft %s", ports, httpPort, raftPort)
	}

	headless, ok := m.services[sts.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q is not a headless Service publishing not-ready pods", sts.Spec.ServiceName)
	}
	domain := "." + sts.Spec.ServiceName + ".$(POD_NAMESPACE).svc.cluster.local:"
	if set["node-id"] != "$(POD_NAME)" {
		t.Errorf("--node-id %q; want the pod name, stable across restarts", set["node-id"])
	}
	if set["raft-advertise"] != "$(POD_NAME)"+domain+raftPort || set["http-advertise"] != "$(POD_NAME)"+domain+httpPort {
		t.Errorf("advertised addresses %q, %q are not the pod's stable DNS names", set["raft-advertise"], set["http-advertise"])
	}
	first := sts.Metadata.Name + "-0"
	if firstHTTP := strings.ReplaceAll(set["http-advertise"], "$(POD_NAME)", first); set["join"] != firstHTTP {
		t.Errorf("--join %q; want the first pod's advertised address %q (which it skips, and so bootstraps)", set["join"], firstHTTP)
	}
	if sts.Spec.PodManagementPolicy != "Parallel" {
		t.Errorf("podManagementPolicy %q: after a full stop OrderedReady waits for a pod that needs its peers to become ready", sts.Spec.PodManagementPolicy)
	}

	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe.HTTPGet.Port != "http" || c.ReadinessProbe.HTTPGet.Port != "http" {
		t.Errorf("probes %+v, %+v; want /healthz and /readyz on port http", c.LivenessProbe, c.ReadinessProbe)
	}

	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	claims := map[string]bool{}
	for _, vc := range sts.Spec.VolumeClaimTemplates {
		claims[vc.Metadata.Name] = true
	}
	dataMounted := false
	for name, p := range mounts {
		dataMounted = dataMounted || (claims[name] && p == set["data-dir"])
	}
	if !dataMounted {
		t.Errorf("--data-dir %q is not on a volumeClaimTemplate (mounts %v)", set["data-dir"], mounts)
	}
	rulesDir, rulesFile := path.Split(set["rules"])
	rulesFound := false
	for _, v := range pod.Spec.Volumes {
		cm, ok := m.configMaps[v.ConfigMap.Name]
		if !ok || mounts[v.Name] != strings.TrimSuffix(rulesDir, "/") {
			continue
		}
		rulesFound = true
		if _, err := rules.Parse([]byte(cm.Data[rulesFile])); err != nil {
			t.Errorf("ConfigMap %s key %s: %v", cm.Metadata.Name, rulesFile, err)
		}
	}
	if !rulesFound {
		t.Errorf("--rules %q is not a ConfigMap key mounted into the pod", set["rules"])
	}
	if uid := strconv.Itoa(pod.Spec.SecurityContext.RunAsUser); uid != imageUID(t) {
		t.Errorf("runAsUser %s; the image's user is %s", uid, imageUID(t))
	}

	labels := pod.Metadata.Labels
	selects := func(sel map[string]string) bool {
		return len(sel) > 0 && subset(sel, labels)
	}
	if !selects(sts.Spec.Selector.MatchLabels) || !selects(m.pdb.Spec.Selector.MatchLabels) {
		t.Errorf("StatefulSet or PDB selector does not select the pods %v", labels)
	}
	for name, s := range m.services {
		if !selects(s.Spec.Selector) {
			t.Errorf("Service %s selects %v, not the pods %v", name, s.Spec.Selector, labels)
		}
		for _, p := range s.Spec.Ports {
			if ports[p.TargetPort] != strconv.Itoa(p.Port) {
				t.Errorf("Service %s port %s → %q: not a container port with that number", name, p.Name, p.TargetPort)
			}
		}
	}
	if n, down := sts.Spec.Replicas, m.pdb.Spec.MaxUnavailable; down < 1 || n-down <= n/2 {
		t.Errorf("PDB maxUnavailable %d of %d replicas: a raft majority must stay up, and drains must be possible", down, n)
	}
}

// The Kubernetes scrape job keeps exactly the Sluice pods' http port.
// (Debian's promtool lacks Kubernetes discovery, so this file is read here.)
func TestKubernetesScrapeConfig(t *testing.T) {
	m := loadK8s(t)
	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath    string `yaml:"metrics_path"`
			RelabelConfigs []struct {
				SourceLabels []string `yaml:"source_labels"`
				Regex        string   `yaml:"regex"`
				Action       string   `yaml:"action"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/kubernetes/prometheus-scrape.yml"), &prom); err != nil {
		t.Fatal(err)
	}
	if len(prom.ScrapeConfigs) != 1 || prom.ScrapeConfigs[0].MetricsPath != "/metrics" {
		t.Fatalf("want one job scraping /metrics, got %+v", prom.ScrapeConfigs)
	}
	keep := map[string]string{}
	for _, rc := range prom.ScrapeConfigs[0].RelabelConfigs {
		if rc.Action == "keep" && len(rc.SourceLabels) == 1 {
			keep[rc.SourceLabels[0]] = rc.Regex
		}
	}
	labels := m.sts.Spec.Template.Metadata.Labels
	if keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"] != labels["app.kubernetes.io/name"] {
		t.Errorf("scrape keeps pods labelled %q; the pods are %v", keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"], labels)
	}
	portName := keep["__meta_kubernetes_pod_container_port_name"]
	found := false
	for _, p := range m.sts.Spec.Template.Spec.Containers[0].Ports {
		found = found || p.Name == portName
	}
	if !found {
		t.Errorf("scrape keeps container port %q, which the pod does not have", portName)
	}
}

func hasEnvFrom(c k8sContainer, name string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return true
		}
	}
	return false
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
