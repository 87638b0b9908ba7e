package layers

import (
	"bytes"
	"encoding/json"
	"go/format"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// moduleRoot returns the directory of corral's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		t.Fatal("not inside a module")
	}
	return filepath.Dir(mod)
}

// importGraph lists the module's packages and, for each, the corral
// packages its non-test files import, all relative to the module. Test
// files may reach up for fixtures (an agent test starting a client), so
// only what a build links is checked.
func importGraph(t *testing.T, root string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		rel, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		graph[rel] = nil
		for _, imp := range p.Imports {
			if r, ok := relative(imp); ok {
				graph[rel] = append(graph[rel], r)
			}
		}
	}
	if len(graph) == 0 {
		t.Fatal("go list found no packages")
	}
	return graph
}

func relative(importPath string) (string, bool) {
	return strings.CutPrefix(importPath, Module+"/")
}

// TestImportsPointDown enforces DESIGN.md's layer diagram on the real tree.
func TestImportsPointDown(t *testing.T) {
	root := moduleRoot(t)
	for _, line := range check(ranks, importGraph(t, root)) {
		t.Error(line)
	}
}

// TestCheck proves the checker can fail: a synthetic graph with one edge
// of each kind it must refuse, and the edges it must let through.
func TestCheck(t *testing.T) {
	graph := map[string][]string{
		"proto/client":              {"proto", "types/event"},         // leaves among themselves
		"transport":                 {"proto", "mesh"},                // up: 1 -> 2
		"clusterlog":                {"events"},                       // clusterlog takes leaves only
		"clusterlog/clusterlogtest": {"clusterlog"},                   // test sibling of its parent
		"mesh/route":                {"mesh"},                         // same family, same rank
		"groups":                    {"service", "dsvc", "rsm"},       // a service importing a service
		"client":                    {"transport", "events", "agent"}, // the library importing the daemon
		"cmd/corral":                {"agent", "client"},
		"agent":                     {"groups", "cluster"},
		"mesh":                      {"transport"},
		"brandnew":                  {"proto"},
	}
	want := []string{
		"brandnew: not in the rank table; add it to ranks in internal/layers/rank.go, in the row of DESIGN.md's diagram it belongs to",
		"client -> agent (rank 9 -> 8)",
		"clusterlog -> events (rank 1 -> 1)",
		"groups -> dsvc (rank 7 -> 7)",
		"transport -> mesh (rank 1 -> 2)",
	}
	got := check(ranks, graph)
	if !slices.Equal(got, want) {
		t.Errorf("check found\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestLookup pins how packages find their row.
func TestLookup(t *testing.T) {
	for pkg, want := range map[string]int{
		"proto":                     0,
		"proto/peer":                0,
		"types/event":               0,
		"events/eventstest":         1,
		"transport/transporttest":   1,
		"clusterlog/clusterlogtest": 1,
		"mesh/meshtest":             2,
		"dsvc/files":                7,
		"client/admin":              9,
	} {
		l, ok := lookup(ranks, pkg)
		if !ok || l.rank != want {
			t.Errorf("lookup(%s) = rank %d, %v; want %d", pkg, l.rank, ok, want)
		}
	}
	for _, pkg := range []string{"eventsx", "protos", "cmd/other"} {
		if _, ok := lookup(ranks, pkg); ok {
			t.Errorf("lookup(%s) found a row", pkg)
		}
	}
}

// TestCmdImportsAgentOnce: of the CLI, only the file that runs the agent
// may import it; the tools reach the agent through its sockets.
func TestCmdImportsAgentOnce(t *testing.T) {
	dir := filepath.Join(moduleRoot(t), "cmd", "corral")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || filepath.Base(name) == "agent.go" {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == Module+"/agent" {
				t.Errorf("%s imports agent; take paths from internal/datadir and the version from internal/buildinfo", name)
			}
		}
	}
}

// TestGofmt fails for any Go file of the module that gofmt would change.
func TestGofmt(t *testing.T) {
	root := moduleRoot(t)
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		rel, _ := filepath.Rel(root, path)
		if out, err := format.Source(src); err != nil {
			t.Errorf("%s: %v", rel, err)
		} else if !bytes.Equal(out, src) {
			t.Errorf("%s is not gofmt-ed; run gofmt -w %s", rel, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no Go files found")
	}
}
