package datadir_test

import (
	"testing"

	"github.com/corralhq/corral/internal/datadir"
)

// TestLayout pins the file names: agents, tools and applications of
// different builds find each other by them.
func TestLayout(t *testing.T) {
	for got, want := range map[string]string{
		datadir.AdminSocket("/d"):    "/d/admin.sock",
		datadir.ClientSocket("/d"):   "/d/client.sock",
		datadir.NodeIDFile("/d"):     "/d/node-id",
		datadir.ClusterKeyFile("/d"): "/d/cluster.key",
		datadir.TxEpochFile("/d"):    "/d/tx-epoch",
		datadir.RouteSeqnoFile("/d"): "/d/route-seqno",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestDir(t *testing.T) {
	t.Setenv(datadir.EnvVar, "")
	if d := datadir.Dir(); d != datadir.Default {
		t.Errorf("Dir() without %s = %q, want %q", datadir.EnvVar, d, datadir.Default)
	}
	t.Setenv(datadir.EnvVar, "/tmp/corral-x")
	if d := datadir.Dir(); d != "/tmp/corral-x" {
		t.Errorf("Dir() = %q, want $%s", d, datadir.EnvVar)
	}
}
