package main

import (
	"cmp"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	Resources struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
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
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
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

type k8sHPA struct {
	APIVersion string `yaml:"apiVersion"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource struct {
				Name   string `yaml:"name"`
				Target struct {
					Type               string `yaml:"type"`
					AverageUtilization int    `yaml:"averageUtilization"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
		Behavior struct {
			ScaleDown struct {
				Policies []struct {
					Type  string `yaml:"type"`
					Value int    `yaml:"value"`
				} `yaml:"policies"`
			} `yaml:"scaleDown"`
		} `yaml:"behavior"`
	} `yaml:"spec"`
}

// k8sManifests reads deploy/kubernetes/sluice.yaml, one object per kind
// (Services by name).
type k8sManifests struct {
	configMaps map[string]k8sConfigMap
	services   map[string]k8sService
	sts        k8sStatefulSet
	pdb        k8sPDB
	hpa        k8sHPA
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
		case "HorizontalPodAutoscaler":
			err = yaml.Unmarshal([]byte(doc), &m.hpa)
		default:
			t.Fatalf("sluice.yaml: unexpected kind %q", head.Kind)
		}
		if err != nil {
			t.Fatalf("sluice.yaml %s: %v", head.Kind, err)
		}
	}
	if kinds["StatefulSet"] != 1 || kinds["PodDisruptionBudget"] != 1 || kinds["HorizontalPodAutoscaler"] != 1 ||
		kinds["Service"] != 2 || kinds["ConfigMap"] != 1 {
		t.Fatalf("sluice.yaml kinds %v; want a StatefulSet, a PDB, an HPA, two Services, a ConfigMap", kinds)
	}
	return m
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// The manifests fit the binary and each other: serve settings the binary
// accepts, stable identities through the headless Service, the same --join
// for every pod with the first pod bootstrapping, probes on /healthz and
// /readyz, the data dir on a volume, rules from the ConfigMap, and selectors
// that select the pods. Scaling is checked by TestKubernetesScaling.
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
	if !selects(sts.Spec.Selector.MatchLabels) {
		t.Errorf("StatefulSet selector does not select the pods %v", labels)
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
}

// The StatefulSet scales without manual steps: every pod --join's the first
// pods (any can let a newcomer in; the first bootstraps), an HPA on CPU owns
// the replica count and never goes below the voting core, scale-down goes
// one pod at a time, the PDB keeps the smallest core's quorum through
// drains, and a pod's termination grace covers the vote hand-over.
func TestKubernetesScaling(t *testing.T) {
	m := loadK8s(t)
	sts, hpa := m.sts, m.hpa.Spec
	pod := sts.Spec.Template
	c := pod.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	set := serveSettings(t, "StatefulSet", serveFlagNames(t), env, c.Args)

	if ref := hpa.ScaleTargetRef; m.hpa.APIVersion != "autoscaling/v2" || ref.APIVersion != "apps/v1" ||
		ref.Kind != "StatefulSet" || ref.Name != sts.Metadata.Name {
		t.Errorf("HPA %s targets %+v; want autoscaling/v2 on apps/v1 StatefulSet %s", m.hpa.APIVersion, ref, sts.Metadata.Name)
	}
	if sts.Spec.Replicas != 0 {
		t.Errorf("StatefulSet replicas %d: with an HPA the manifest must not set them (every apply would reset the HPA's count)", sts.Spec.Replicas)
	}
	cpu := false
	for _, metric := range hpa.Metrics {
		r := metric.Resource
		cpu = cpu || (metric.Type == "Resource" && r.Name == "cpu" && r.Target.Type == "Utilization" &&
			r.Target.AverageUtilization > 0 && r.Target.AverageUtilization <= 100)
	}
	if !cpu || c.Resources.Requests["cpu"] == "" {
		t.Errorf("HPA metrics %+v, container cpu request %q: want CPU utilization of a container that requests CPU", hpa.Metrics, c.Resources.Requests["cpu"])
	}
	voters, err := strconv.Atoi(cmp.Or(set["voters"], "0"))
	if err != nil {
		t.Fatalf("--voters %q: %v", set["voters"], err)
	}
	const autoCore = 3 // the smallest auto core (node/membership.go coreSize)
	smallestCore := cmp.Or(voters, min(autoCore, hpa.MinReplicas))
	if hpa.MinReplicas < smallestCore || hpa.MinReplicas < autoCore || hpa.MaxReplicas <= hpa.MinReplicas {
		t.Errorf("HPA replicas %d..%d; want at least the voting core of %d, and room to grow", hpa.MinReplicas, hpa.MaxReplicas, autoCore)
	}
	policies := hpa.Behavior.ScaleDown.Policies
	if len(policies) != 1 || policies[0].Type != "Pods" || policies[0].Value != 1 {
		t.Errorf("HPA scale-down policies %+v; want one pod at a time, so a leaving voter finds a non-voter that stays", policies)
	}

	if !subset(m.pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels) || len(m.pdb.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("PDB selects %v, not the pods %v", m.pdb.Spec.Selector.MatchLabels, pod.Metadata.Labels)
	}
	if down := m.pdb.Spec.MaxUnavailable; down < 1 || smallestCore-down < smallestCore/2+1 {
		t.Errorf("PDB maxUnavailable %d: a core of %d voters must keep its quorum of %d, and drains must be possible",
			down, smallestCore, smallestCore/2+1)
	}

	grace := time.Duration(pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace < 2*shutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v; a graceful stop (hand-over %v, then drain) takes up to %v before raft closes",
			grace, leaveTimeout, shutdownTimeout)
	}
	voterGrace, err1 := time.ParseDuration(set["autopilot-voter-grace"])
	removeAfter, err2 := time.ParseDuration(set["autopilot-remove-after"])
	if err1 != nil || err2 != nil || removeAfter <= voterGrace {
		t.Errorf("autopilot grace %q, remove after %q: want durations, removal after the vote has moved", set["autopilot-voter-grace"], set["autopilot-remove-after"])
	}

	// The same --join on every pod, naming pods that always exist.
	advertise := func(i int) string {
		return strings.ReplaceAll(set["http-advertise"], "$(POD_NAME)", sts.Metadata.Name+"-"+strconv.Itoa(i))
	}
	seeds := splitList(set["join"])
	for i, seed := range seeds {
		if i >= hpa.MinReplicas || seed != advertise(i) {
			t.Errorf("--join entry %d is %q; want pod %d's advertised address %q, a pod the HPA always keeps", i, seed, i, advertise(i))
		}
	}
	if len(seeds) < 2 {
		t.Errorf("--join %q: a new pod must be able to join while sluice-0 is down", set["join"])
	}
	if got, seed := joinTargets(set["join"], advertise(0)); !seed || len(got) != len(seeds)-1 {
		t.Errorf("the first pod joins %v (seed %v); it must be the seed, asking the other seeds before it bootstraps", got, seed)
	}
	if got, seed := joinTargets(set["join"], advertise(1)); seed || len(got) != len(seeds)-1 {
		t.Errorf("the second pod joins %v (seed %v); want every seed but itself", got, seed)
	}
	if got, seed := joinTargets(set["join"], advertise(hpa.MaxReplicas-1)); seed || len(got) != len(seeds) {
		t.Errorf("the last pod the HPA may add joins %v (seed %v); want every seed %v", got, seed, seeds)
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
