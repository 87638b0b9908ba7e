package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/corralhq/corral/dsvc"
)

// DTTable is an open dhcptab container: a table keyed by (key, type).
type DTTable struct {
	p     *pgxpool.Pool
	name  string // the table's name
	table string // name, quoted for SQL
}

var (
	_ dsvc.DTHandle   = (*DTTable)(nil)
	_ dsvc.DTImporter = (*DTTable)(nil)
)

const dtCols = "key, type, value, sig"

func scanDT(row pgx.CollectableRow) (dsvc.DTRecord, error) {
	var r dsvc.DTRecord
	var typ string
	var val []byte
	var sig int64
	if err := row.Scan(&r.Key, &typ, &val, &sig); err != nil {
		return r, err
	}
	if len(typ) == 1 {
		r.Type = dsvc.DTType(typ[0])
	}
	r.Value, r.Sig = string(val), uint64(sig)
	return r, nil
}

func (h *DTTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, target *dsvc.DTRecord) ([]dsvc.DTRecord, error) {
	if count == 0 {
		return nil, nil
	}
	w := dtWhere(q, orEmptyDT(target))
	rows, err := h.p.Query(ctx, "SELECT "+dtCols+" FROM "+h.table+w.String()+" ORDER BY key, type"+limit(count), w.args...)
	if err != nil {
		return nil, mapErr(err, dsvc.CodeInternal)
	}
	rs, err := pgx.CollectRows(rows, scanDT)
	if err != nil {
		if partial && len(rs) > 0 {
			return rs, nil
		}
		return nil, mapErr(err, dsvc.CodeInternal)
	}
	return rs, nil
}

func (h *DTTable) Count(ctx context.Context, q dsvc.Query, target *dsvc.DTRecord) (int, error) {
	w := dtWhere(q, orEmptyDT(target))
	var n int64
	if err := h.p.QueryRow(ctx, "SELECT count(*) FROM "+h.table+w.String(), w.args...).Scan(&n); err != nil {
		return 0, mapErr(err, dsvc.CodeInternal)
	}
	return int(n), nil
}

func orEmptyDT(r *dsvc.DTRecord) *dsvc.DTRecord {
	if r == nil {
		return &dsvc.DTRecord{}
	}
	return r
}

func (h *DTTable) Add(ctx context.Context, r *dsvc.DTRecord) error {
	sig := dsvc.RandomSig()
	tag, err := h.p.Exec(ctx, "INSERT INTO "+h.table+" ("+dtCols+") VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		r.Key, string(rune(r.Type)), []byte(r.Value), int64(sig))
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	if tag.RowsAffected() == 0 {
		return dsvc.Errorf(dsvc.CodeExists, "%s %c is stored", r.Key, r.Type)
	}
	r.Sig = sig
	return nil
}

// missing tells why a compare-and-set changed no row: the record is gone
// (ErrNoEnt) or its signature moved on (ErrCollision).
func missing(ctx context.Context, p *pgxpool.Pool, sql string, what string, args ...any) error {
	var one int
	err := p.QueryRow(ctx, sql, args...).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return dsvc.Errorf(dsvc.CodeNoEnt, "%s is not stored", what)
	case err != nil:
		return mapErr(err, dsvc.CodeInternal)
	}
	return dsvc.Errorf(dsvc.CodeCollision, "%s changed since it was read", what)
}

func (h *DTTable) Modify(ctx context.Context, orig, r *dsvc.DTRecord) error {
	if orig == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no original record")
	}
	sig := dsvc.NextSig(orig.Sig)
	tag, err := h.p.Exec(ctx, "UPDATE "+h.table+" SET key = $1, type = $2, value = $3, sig = $4 WHERE key = $5 AND type = $6 AND sig = $7",
		r.Key, string(rune(r.Type)), []byte(r.Value), int64(sig), orig.Key, string(rune(orig.Type)), int64(orig.Sig))
	if err != nil {
		err = mapErr(err, dsvc.CodeInternal)
		if dsvc.CodeOf(err) == dsvc.CodeExists {
			return &dsvc.Error{Code: dsvc.CodeExists, Detail: r.Key + " " + string(rune(r.Type)) + " is stored", Err: errors.Unwrap(err)}
		}
		return err
	}
	if tag.RowsAffected() == 0 {
		return missing(ctx, h.p, "SELECT 1 FROM "+h.table+" WHERE key = $1 AND type = $2", orig.Key+" "+string(rune(orig.Type)), orig.Key, string(rune(orig.Type)))
	}
	r.Sig = sig
	return nil
}

func (h *DTTable) Delete(ctx context.Context, r *dsvc.DTRecord) error {
	sql := "DELETE FROM " + h.table + " WHERE key = $1 AND type = $2"
	args := []any{r.Key, string(rune(r.Type))}
	if r.Sig != 0 {
		sql += " AND sig = $3"
		args = append(args, int64(r.Sig))
	}
	tag, err := h.p.Exec(ctx, sql, args...)
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	if tag.RowsAffected() == 0 {
		return missing(ctx, h.p, "SELECT 1 FROM "+h.table+" WHERE key = $1 AND type = $2", r.Key+" "+string(rune(r.Type)), args[:2]...)
	}
	return nil
}

// Import stores rs with their signatures (a new one, written back, where
// Sig is 0) in one transaction: all or nothing; ErrExists if one is
// stored.
func (h *DTTable) Import(ctx context.Context, rs []dsvc.DTRecord) error {
	sigs := make([]uint64, len(rs)) // written back only once committed
	for i := range rs {
		if sigs[i] = rs[i].Sig; sigs[i] == 0 {
			sigs[i] = dsvc.RandomSig()
		}
	}
	err := pgx.BeginFunc(ctx, h.p, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{h.name}, []string{"key", "type", "value", "sig"},
			pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
				r := &rs[i]
				return []any{r.Key, string(rune(r.Type)), []byte(r.Value), int64(sigs[i])}, nil
			}))
		return err
	})
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	for i := range rs {
		rs[i].Sig = sigs[i]
	}
	return nil
}

func (h *DTTable) Close() error { return nil }
