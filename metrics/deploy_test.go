package metrics

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDeployedMetricNames checks that every replicator metric the Grafana
// dashboard and the alert rules query is one the daemon exports.
func TestDeployedMetricNames(t *testing.T) {
	m := New()
	exported := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		if !v.Field(i).CanInterface() {
			continue
		}
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 4)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if n := fqName.FindStringSubmatch(d.String()); n != nil {
				exported[n[1]] = true
			}
		}
	}
	if len(exported) < 10 {
		t.Fatalf("found only %d exported metrics: %v", len(exported), exported)
	}
	used := regexp.MustCompile(`replicator_[a-z_]+`)
	for _, file := range []string{"../deploy/grafana/replicator.json", "../deploy/prometheus/alerts.yml", "../deploy/prometheus/alerts_test.yml"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range used.FindAllString(string(src), -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
					base = b
				}
			}
			if !exported[base] && base != "replicator_" {
				t.Errorf("%s queries %s, which the daemon does not export", file, name)
			}
		}
	}
}
