package main

// Shared parts of the data-service tools (pntadm, dhtadm, dsvc): the
// datastore flags, the registry of modules, Solaris exit statuses and batch
// mode.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	dsvccluster "github.com/corralhq/corral/dsvc/cluster"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
	"github.com/corralhq/corral/dsvc/postgres"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses of pntadm and dhtadm (man1m): the same numbers as Solaris,
// so scripts written for it keep working.
const (
	exitOK          = 0
	exitExists      = 1 // the record or container exists
	exitNoEnt       = 2 // the record, container or location does not exist
	exitNonCritical = 3 // bad input, collision, busy: nothing was changed, retry or fix the command
	exitCritical    = 4 // the datastore or its module failed
)

// exitError carries the exit status a command ends with; main exits with it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitStatus maps an error to its exit status. The dsvc codes map as:
// Exists, TableExists → 1; NoEnt, NoTable, NoLocation → 2; Inval,
// Collision, Busy, Access, Unsupported → 3; every other code → 4. A usage
// error is 3.
func exitStatus(err error) int {
	if err == nil {
		return exitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	switch dsvc.CodeOf(err) {
	case dsvc.CodeSuccess:
		return exitOK
	case dsvc.CodeExists, dsvc.CodeTableExists:
		return exitExists
	case dsvc.CodeNoEnt, dsvc.CodeNoTable, dsvc.CodeNoLocation:
		return exitNoEnt
	case dsvc.CodeInval, dsvc.CodeCollision, dsvc.CodeBusy, dsvc.CodeAccess, dsvc.CodeUnsupported:
		return exitNonCritical
	}
	return exitCritical
}

// failed wraps a dsvc error with its exit status.
func failed(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitStatus(err), err: err}
}

// usage is a bad command line: exit 3, nothing done.
func usage(format string, args ...any) error {
	return &exitError{code: exitNonCritical, err: fmt.Errorf(format, args...)}
}

// dsFlags are the -r -p -u overrides of dhcpsvc.conf every tool takes.
type dsFlags struct {
	resource, path, config, lockDir string
}

func (f *dsFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.resource, "resource", "r", f.resource, "data-service module (RESOURCE): files, binfiles, postgres or cluster; default "+dsvc.DefaultModule)
	fs.StringVarP(&f.path, "path", "p", f.path, "datastore location (PATH); default $CORRAL_DATA_DIR/dsvc, for cluster /dsvc")
	fs.StringVarP(&f.config, "config", "u", f.config, "module configuration (RESOURCE_CONFIG), e.g. cluster: data-dir=DIR,reads=local")
	fs.StringVar(&f.lockDir, "lock-dir", f.lockDir, "lock service directory; default that of dsvc/lock (shared with every corral process on the host)")
}

func (f *dsFlags) datastore() dsvc.Datastore {
	p := f.path
	switch {
	case p == "" && f.resource == dsvccluster.Name:
		p = "/dsvc" // a name in the cluster store, the same on every node
	case p == "":
		p = filepath.Join(datadir.Dir(), "dsvc")
	}
	return dsvc.Datastore{Module: f.resource, Location: p, Config: f.config, Version: dsvc.CurrentVersion}
}

// registry is the set of modules the tools know. The lock directory is
// dsvc/lock's default (not one under the data dir) so that the tools and a
// server on the same host lock each other out whatever data dir they use.
func (f *dsFlags) registry() (*dsvc.Registry, error) {
	lk, err := lock.New(lock.Options{Dir: f.lockDir})
	if err != nil {
		return nil, failed(err)
	}
	return newDsvcRegistry(lk)
}

func newDsvcRegistry(lk dsvc.Locker) (*dsvc.Registry, error) {
	mods := []dsvc.Module{
		files.New(),
		binfiles.New(nil),
		postgres.New(nil), // its pools end with the process: the tools run one command
		dsvccluster.New(nil),
	}
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, mods...)
	return reg, failed(err)
}

// toolCommand sets up a Solaris-style tool: flag errors are usage errors
// (3), and -h is left free for the tool (pntadm's -h is a host name), so
// help is --help only.
func toolCommand(c *cobra.Command) *cobra.Command {
	c.SilenceUsage = true
	c.SilenceErrors = true
	c.Flags().Bool("help", false, "help for "+c.Name())
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage("%v", err) })
	return c
}

// ensureLocation creates the datastore's location if it does not exist
// (pntadm -C and dhtadm -C on a fresh data dir; Solaris leaves that to
// dhcpconfig).
func ensureLocation(cmd *cobra.Command, reg *dsvc.Registry, ds dsvc.Datastore) error {
	err := reg.Status(cmd.Context(), ds)
	if errors.Is(err, dsvc.ErrNoLocation) {
		if !strings.Contains(ds.Location, "://") {
			// A directory location: create its parents too.
			if err := os.MkdirAll(filepath.Dir(ds.Location), 0o755); err != nil {
				return failed(err)
			}
		}
		err = reg.MkLocation(cmd.Context(), ds)
		if errors.Is(err, dsvc.ErrExists) {
			err = nil
		}
	}
	return failed(err)
}

// runBatch runs the command lines of a batch file (stdin for "" or "-")
// in order, each through a fresh command from mk, and goes on after a
// failing line as Solaris does. It returns the highest exit status.
func runBatch(cmd *cobra.Command, file string, verbose bool, mk func() *cobra.Command) error {
	var in io.Reader = cmd.InOrStdin()
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return &exitError{code: exitNoEnt, err: err}
		}
		defer f.Close()
		in = f
	}
	worst := exitOK
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words, err := splitWords(line)
		if err == nil {
			for _, w := range words {
				if w == "-B" || w == "--batch" {
					err = errors.New("-B inside a batch file")
				}
			}
		}
		if err == nil {
			if verbose {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", cmd.Name(), line)
			}
			c := mk()
			c.SetArgs(words)
			c.SetOut(cmd.OutOrStdout())
			c.SetErr(cmd.ErrOrStderr())
			err = c.ExecuteContext(cmd.Context())
			if err != nil && exitStatus(err) == exitOK {
				err = nil
			}
		} else {
			err = usage("%v", err)
		}
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: line %d: %v\n", cmd.Name(), n, err)
			worst = max(worst, exitStatus(err))
		}
	}
	if err := sc.Err(); err != nil {
		return &exitError{code: exitCritical, err: err}
	}
	if worst != exitOK {
		return &exitError{code: worst, err: fmt.Errorf("batch: some lines failed")}
	}
	return nil
}

// splitWords splits a batch line into words: blanks separate them, single
// and double quotes group, a backslash escapes the next byte.
func splitWords(s string) ([]string, error) {
	var words []string
	var b strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '\'' || c == '"'):
			quote, in = c, true
		case c == '\\' && quote != '\'' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			in = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, b.String())
	}
	return words, nil
}

// oneVerb checks that exactly one of the verb flags is set and returns it.
func oneVerb(cmd *cobra.Command, verbs ...string) (string, error) {
	var set []string
	for _, v := range verbs {
		if cmd.Flags().Changed(v) {
			set = append(set, v)
		}
	}
	if len(set) != 1 {
		return "", usage("give exactly one of --%s (got %d)", strings.Join(verbs, ", --"), len(set))
	}
	return set[0], nil
}
