package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/corralhq/corral/dsvc"
)

// Name and Version of the module: containers are tables named
// "postgres1_dhcptab" and "postgres1_10_0_0_0".
const (
	Name    = "postgres"
	Version = 1
)

// catalog is the table whose existence makes a location.
const catalog = "corral_dsvc_catalog"

// Module is the postgres module. Its zero value is not usable; call New.
// It keeps one connection pool per location, until Close.
type Module struct {
	log *slog.Logger

	mu       sync.Mutex               // guards pools and maxConns
	pools    map[string]*pgxpool.Pool // by location string
	maxConns int32                    // Configure's maxconns; 0: pgxpool's default
}

var _ dsvc.Module = (*Module)(nil)

// New returns the module. log may be nil.
func New(log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{log: log.With("subsystem", "dsvc/postgres"), pools: map[string]*pgxpool.Pool{}}
}

func (m *Module) Name() string          { return Name }
func (m *Module) Version() int          { return Version }
func (m *Module) APIVersion() int       { return dsvc.APIVersion }
func (m *Module) Synch() dsvc.SynchType { return dsvc.SynchNone }

// Configure takes "" or "maxconns=<n>": the most connections a location's
// pool opens.
func (m *Module) Configure(config string) error {
	config = strings.TrimSpace(config)
	if config == "" {
		return nil
	}
	v, ok := strings.CutPrefix(config, "maxconns=")
	var n int32
	if _, err := fmt.Sscanf(v, "%d", &n); !ok || err != nil || n < 1 {
		return dsvc.Errorf(dsvc.CodeModuleConfig, "postgres: config %q: want maxconns=<n>", config)
	}
	m.mu.Lock()
	m.maxConns = n
	m.mu.Unlock()
	return nil
}

// Close closes every pool the module opened. Handles still open fail
// afterwards.
func (m *Module) Close() {
	m.mu.Lock()
	pools := m.pools
	m.pools = map[string]*pgxpool.Pool{}
	m.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
}

func parse(location string) (*pgxpool.Config, error) {
	if strings.TrimSpace(location) == "" {
		return nil, dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	cfg, err := pgxpool.ParseConfig(location)
	if err != nil {
		// The message may quote the password: keep only that it failed.
		return nil, dsvc.Errorf(dsvc.CodeBadPath, "not a PostgreSQL connection string")
	}
	return cfg, nil
}

// LocToken is user@host:port/database?search_path=..., the same for a URL
// and a DSN naming one place.
func (m *Module) LocToken(location string) (string, error) {
	cfg, err := parse(location)
	if err != nil {
		return "", err
	}
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s/%s?search_path=%s", c.User, net.JoinHostPort(c.Host, fmt.Sprint(c.Port)), c.Database, c.RuntimeParams["search_path"]), nil
}

// pool returns the location's pool, making it on first use (pgxpool
// connects lazily, so errors of the server show at the first query).
func (m *Module) pool(location string) (*pgxpool.Pool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[location]; p != nil {
		return p, nil
	}
	cfg, err := parse(location)
	if err != nil {
		return nil, err
	}
	if m.maxConns > 0 {
		cfg.MaxConns = m.maxConns
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, mapErr(err, dsvc.CodeInternal)
	}
	m.pools[location] = p
	return p, nil
}

// mapErr maps a driver error to a dsvc code; other is used for errors
// that say nothing more specific.
func mapErr(err error, other dsvc.Code) error {
	if err == nil {
		return nil
	}
	var de *dsvc.Error
	if errors.As(err, &de) {
		return err
	}
	code := other
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		switch {
		case pe.Code == "28P01" || pe.Code == "28000" || pe.Code == "42501":
			code = dsvc.CodeNoCred // bad password, no pg_hba entry, insufficient privilege
		case pe.Code == "42P01":
			code = dsvc.CodeNoTable
		case pe.Code == "42P07":
			code = dsvc.CodeTableExists
		case pe.Code == "23505":
			code = dsvc.CodeExists
		case pe.Code == "3D000" || pe.Code == "3F000":
			code = dsvc.CodeNoLocation // no such database, no schema to create in
		case pe.Code == "53300" || strings.HasPrefix(pe.Code, "53"):
			code = dsvc.CodeNoResources // too many connections, disk full, out of memory
		case strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08"):
			code = dsvc.CodeUnavailable // shutting down, connection failure
		case pe.Code == "40001" || pe.Code == "40P01":
			code = dsvc.CodeBusy // serialization failure, deadlock
		}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		code = dsvc.CodeUnavailable
	case errors.As(err, &ce), errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &ne), pgconn.Timeout(err):
		code = dsvc.CodeUnavailable
	}
	return &dsvc.Error{Code: code, Err: err}
}

// Status connects and checks the location's catalog.
func (m *Module) Status(ctx context.Context, location string) error {
	p, err := m.pool(location)
	if err != nil {
		return err
	}
	var ok bool
	if err := p.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", catalog).Scan(&ok); err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	if !ok {
		return dsvc.Errorf(dsvc.CodeNoLocation, "no %s table (run MkLocation)", catalog)
	}
	return nil
}

// MkLocation creates the catalog table in the connection's schema (the
// first of its search_path); ErrExists if it is there.
func (m *Module) MkLocation(ctx context.Context, location string) error {
	p, err := m.pool(location)
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, `CREATE TABLE `+ident(catalog)+` (
		name    text COLLATE "C" PRIMARY KEY,
		kind    smallint NOT NULL,
		prefix  text NOT NULL,
		version integer NOT NULL)`)
	if err != nil {
		err = mapErr(err, dsvc.CodeInternal)
		if dsvc.CodeOf(err) == dsvc.CodeTableExists {
			return dsvc.Errorf(dsvc.CodeExists, "the location exists")
		}
		return err
	}
	return nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// tableName is the table of a container: its internal name, dots mapped to
// underscores.
func tableName(container string) string { return ident(rawName(container)) }

func rawName(container string) string { return strings.ReplaceAll(container, ".", "_") }

// catErr maps an error of a catalog query: a missing catalog is a missing
// location.
func catErr(err error) error {
	err = mapErr(err, dsvc.CodeInternal)
	if dsvc.CodeOf(err) == dsvc.CodeNoTable {
		return &dsvc.Error{Code: dsvc.CodeNoLocation, Detail: "no " + catalog + " table", Err: errors.Unwrap(err)}
	}
	return err
}

func (m *Module) list(ctx context.Context, location string, kind dsvc.Kind) ([]string, error) {
	p, err := m.pool(location)
	if err != nil {
		return nil, err
	}
	rows, err := p.Query(ctx, "SELECT name FROM "+ident(catalog)+" WHERE kind = $1", int16(kind))
	if err != nil {
		return nil, catErr(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, catErr(err)
	}
	sort.Strings(names)
	return names, nil
}

func (m *Module) ListDT(ctx context.Context, location string) ([]string, error) {
	return m.list(ctx, location, dsvc.DHCPTab)
}

func (m *Module) ListDN(ctx context.Context, location string) ([]string, error) {
	return m.list(ctx, location, dsvc.Network)
}

// open finds (or with Create makes, with its table) a container in the
// catalog and returns its pool and stored prefix.
func (m *Module) open(ctx context.Context, location, container string, kind dsvc.Kind, prefix string, f dsvc.OpenFlags, schema string) (*pgxpool.Pool, string, error) {
	p, err := m.pool(location)
	if err != nil {
		return nil, "", err
	}
	if f&dsvc.Create == 0 {
		var k int16
		var stored string
		err := p.QueryRow(ctx, "SELECT kind, prefix FROM "+ident(catalog)+" WHERE name = $1", container).Scan(&k, &stored)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && dsvc.Kind(k) != kind {
			return nil, "", dsvc.Errorf(dsvc.CodeNoTable, "no container %s", container)
		}
		if err != nil {
			return nil, "", catErr(err)
		}
		return p, stored, nil
	}
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "INSERT INTO "+ident(catalog)+" (name, kind, prefix, version) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			container, int16(kind), prefix, Version)
		if err != nil {
			return catErr(err)
		}
		if tag.RowsAffected() == 0 {
			return dsvc.Errorf(dsvc.CodeTableExists, "container %s exists", container)
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE "+tableName(container)+" "+schema); err != nil {
			return mapErr(err, dsvc.CodeInternal)
		}
		return nil
	})
	if err != nil {
		return nil, "", mapErr(err, dsvc.CodeInternal)
	}
	return p, prefix, nil
}

func (m *Module) remove(ctx context.Context, location, container string, kind dsvc.Kind) error {
	p, err := m.pool(location)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM "+ident(catalog)+" WHERE name = $1 AND kind = $2", container, int16(kind))
		if err != nil {
			return catErr(err)
		}
		if tag.RowsAffected() == 0 {
			return dsvc.Errorf(dsvc.CodeNoTable, "no container %s", container)
		}
		_, err = tx.Exec(ctx, "DROP TABLE IF EXISTS "+tableName(container))
		return mapErr(err, dsvc.CodeInternal)
	})
	return mapErr(err, dsvc.CodeInternal)
}

const dtSchema = `(
	key   text COLLATE "C" NOT NULL,
	type  text COLLATE "C" NOT NULL,
	value bytea NOT NULL,
	sig   bigint NOT NULL,
	PRIMARY KEY (key, type))`

const dnSchema = `(
	cip     bigint PRIMARY KEY,
	cid     bytea NOT NULL,
	flags   smallint NOT NULL,
	sip     bigint NOT NULL,
	lease   bigint NOT NULL,
	macro   text COLLATE "C" NOT NULL,
	comment bytea NOT NULL,
	sig     bigint NOT NULL)`

func (m *Module) OpenDT(ctx context.Context, location, container string, f dsvc.OpenFlags) (dsvc.DTHandle, error) {
	p, _, err := m.open(ctx, location, container, dsvc.DHCPTab, "", f, dtSchema)
	if err != nil {
		return nil, err
	}
	return &DTTable{p: p, name: rawName(container), table: tableName(container)}, nil
}

func (m *Module) RemoveDT(ctx context.Context, location, container string) error {
	return m.remove(ctx, location, container, dsvc.DHCPTab)
}

// OpenDN opens a network container; opened without a prefix length it
// takes the one in the catalog.
func (m *Module) OpenDN(ctx context.Context, location, container string, pfx netip.Prefix, f dsvc.OpenFlags) (dsvc.DNHandle, error) {
	s := ""
	if pfx.Bits() >= 0 {
		s = pfx.String()
	}
	p, stored, err := m.open(ctx, location, container, dsvc.Network, s, f, dnSchema+"; CREATE INDEX ON "+tableName(container)+" (cid)")
	if err != nil {
		return nil, err
	}
	got, err := netip.ParsePrefix(stored)
	if err != nil {
		return nil, dsvc.Errorf(dsvc.CodeInternal, "catalog prefix %q of %s: %v", stored, container, err)
	}
	return &DNTable{p: p, name: rawName(container), table: tableName(container), net: got}, nil
}

func (m *Module) RemoveDN(ctx context.Context, location, container string) error {
	return m.remove(ctx, location, container, dsvc.Network)
}
