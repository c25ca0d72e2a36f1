package kubetest

import (
	"encoding/json"
	"fmt"
)

// Deployment is the part of an apps/v1 Deployment the tests read: what
// Knative Serving's controller made of a Revision (its owner, labels and
// pod template).
type Deployment struct {
	Metadata struct {
		Labels          map[string]string             `json:"labels"`
		OwnerReferences []struct{ Kind, Name string } `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []Container `json:"containers"`
				Volumes    []struct {
					Name   string `json:"name"`
					Secret *struct {
						SecretName string `json:"secretName"`
					} `json:"secret"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// Container is one container of a Deployment's pod template.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	Env   []struct {
		Name      string          `json:"name"`
		Value     string          `json:"value"`
		ValueFrom json.RawMessage `json:"valueFrom"`
	} `json:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
	} `json:"envFrom"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
	LivenessProbe *struct {
		HTTPGet struct {
			Path string `json:"path"`
		} `json:"httpGet"`
	} `json:"livenessProbe"`
}

// Container returns the pod template's container of that name.
func (d Deployment) Container(name string) (Container, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return Container{}, false
}

// SecretVolume is the Secret behind the named volume, "" for none.
func (d Deployment) SecretVolume(volume string) string {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == volume && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

// EnvMap is the container's variables with a literal value (those from
// valueFrom as "<from>").
func (c Container) EnvMap() map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
		if len(e.ValueFrom) > 0 {
			out[e.Name] = "<from>"
		}
	}
	return out
}

// ConfigMaps are the config maps the container takes as envFrom.
func (c Container) ConfigMaps() []string {
	var out []string
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			out = append(out, e.ConfigMapRef.Name)
		}
	}
	return out
}

// LatestDeployment is the Deployment Serving made for the Knative Service
// svc's newest Revision, and that Revision's name; the error says which
// of the two is not there yet. kubectl runs kubectl against the cluster.
func LatestDeployment(kubectl func(args ...string) (string, error), ns, svc string) (Deployment, string, error) {
	rev, err := kubectl("-n", ns, "get", "ksvc", svc, "-o", "jsonpath={.status.latestCreatedRevisionName}")
	if err != nil || rev == "" {
		return Deployment{}, "", fmt.Errorf("Service %s/%s: no revision yet (%v)", ns, svc, err)
	}
	out, err := kubectl("-n", ns, "get", "deployment", rev+"-deployment", "-o", "json")
	if err != nil {
		return Deployment{}, rev, fmt.Errorf("revision %s: no Deployment yet: %v", rev, err)
	}
	var d Deployment
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return Deployment{}, rev, fmt.Errorf("revision %s's Deployment: %w", rev, err)
	}
	return d, rev, nil
}
