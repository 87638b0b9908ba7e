// Package postgres is the data-service module "postgres": containers are
// tables in a PostgreSQL database, reached with github.com/jackc/pgx/v5.
//
// A location is a connection string, a postgres:// URL or a keyword/value
// DSN ("host=db user=dhcp dbname=dhcp"); a search_path in it places the
// location in a schema, so one database can hold several locations. A
// location exists when its catalog table, corral_dsvc_catalog, does: one
// row per container with its internal name, kind, network prefix and
// version. Each container is a table named by its internal name with dots
// mapped to underscores ("postgres1_10_0_0_0", "postgres1_dhcptab").
//
// The module asks for no synchronization (SynchNone): the database
// serializes writers, across any number of processes and hosts. The
// signature check is a compare-and-set inside one UPDATE or DELETE
// (WHERE key = $1 AND sig = $2); when it changes no row a second look
// tells a missing record (ErrNoEnt) from a changed one (ErrCollision).
// Add is INSERT ... ON CONFLICT DO NOTHING, no row inserted being
// ErrExists. Lookups and counts translate the dsvc.Query into a WHERE
// clause that selects exactly what dsvc.MatchDT and dsvc.MatchDN select.
//
// Values that may carry bytes outside printable ASCII (dhcptab values,
// comments, client ids) are stored as bytea, so a database's text encoding
// never refuses or alters a record.
package postgres
