package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A --dev agent serves /metrics and /debug/pprof/ on a free port of
// 127.0.0.1, says where, and closes the port when it stops.
func TestDevServesMetrics(t *testing.T) {
	cmd := exec.Command(binary, "agent", "--dev")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var metricsURL string
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "metrics" {
			metricsURL = f[1]
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("--dev did not print a metrics URL on 127.0.0.1 (got %q); stderr:\n%s", metricsURL, stderr.String())
	}

	// The lone dev node founds its cluster: it leads and is the view's one
	// member.
	want := map[string]float64{"corral_raft_leader": 1, "corral_view_members": 1}
	var last map[string]float64
	deadline := time.Now().Add(15 * time.Second)
	for {
		last = scrapeValues(t, metricsURL)
		ok := last["corral_raft_term"] >= 1 && last["corral_raft_applied_index"] >= 1
		for k, v := range want {
			ok = ok && last[k] == v
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed a founded cluster; last %v\nstderr:\n%s", last, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := last["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics on the agent's registry")
	}
	if !strings.Contains(stderr.String(), strings.TrimSuffix(metricsURL, "/metrics")) {
		t.Errorf("the log does not name the http server's URL:\n%s", stderr.String())
	}

	pprofURL := strings.TrimSuffix(metricsURL, "metrics") + "debug/pprof/"
	resp, err := http.Get(pprofURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", pprofURL, resp.Status)
	}

	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dev agent exit: %v\n%s", err, stderr.String())
	}
	host := strings.TrimSuffix(strings.TrimPrefix(metricsURL, "http://"), "/metrics")
	if c, err := net.Dial("tcp", host); err == nil {
		c.Close()
		t.Fatalf("%s still open after the agent stopped", host)
	}
}

// scrapeValues fetches url and returns the value of each metric without
// labels.
func scrapeValues(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != 0 {
				continue
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			}
		}
	}
	return out
}
