package server

import (
	"os"
	"strings"
	"testing"
)

// TestConfigCluster: the documented 3-node example parses, and each node's
// variant (the PER NODE lines) differs only in its owner address.
func TestConfigCluster(t *testing.T) {
	b, err := os.ReadFile("testdata/cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} {
		c, err := ParseConfig([]byte(strings.Replace(string(b), `owners = ["10.0.0.11"]`, `owners = ["`+owner+`"]`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		ds := c.Datastore
		if len(c.Owners) != 1 || c.Owners[0] != owner || ds.Module != "cluster" || ds.Location != "/dsvc" ||
			ds.Config != "data-dir=/var/lib/corral" || c.HTTP != "127.0.0.1:9167" || c.Listen != ":67" ||
			len(c.Networks) != 1 || c.Networks[0].Prefix != "10.0.0.0/24" {
			t.Fatalf("node %s: %+v", owner, c)
		}
	}
}
