package postgres

import (
	"context"
	"errors"
	"net/netip"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/corralhq/corral/dsvc"
)

// DNTable is an open network container: a table keyed by client IP, with
// an index on client id.
type DNTable struct {
	p     *pgxpool.Pool
	name  string // the table's name
	table string // name, quoted for SQL
	net   netip.Prefix
}

var (
	_ dsvc.DNHandle   = (*DNTable)(nil)
	_ dsvc.DNImporter = (*DNTable)(nil)
	_ dsvc.DNPrefixer = (*DNTable)(nil)
)

// Prefix is the network the container was created for.
func (h *DNTable) Prefix() netip.Prefix { return h.net }

const dnCols = "cip, cid, flags, sip, lease, macro, comment, sig"

func scanDN(row pgx.CollectableRow) (dsvc.DNRecord, error) {
	var r dsvc.DNRecord
	var cip, sip, lease, sig int64
	var flags int16
	var comment []byte
	if err := row.Scan(&cip, &r.CID, &flags, &sip, &lease, &r.Macro, &comment, &sig); err != nil {
		return r, err
	}
	r.CIP, r.SIP, r.Flags, r.Lease = fromIP4(cip), fromIP4(sip), dsvc.DNFlags(flags), uint32(lease)
	r.Comment, r.Sig = string(comment), uint64(sig)
	return r, nil
}

func dnArgs(r *dsvc.DNRecord) []any {
	return []any{ip4(r.CIP), nonNil(r.CID), int16(r.Flags), ip4(r.SIP), int64(r.Lease), r.Macro, []byte(r.Comment), int64(r.Sig)}
}

func orEmptyDN(r *dsvc.DNRecord) *dsvc.DNRecord {
	if r == nil {
		return &dsvc.DNRecord{}
	}
	return r
}

func (h *DNTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, target *dsvc.DNRecord) ([]dsvc.DNRecord, error) {
	if count == 0 {
		return nil, nil
	}
	w := dnWhere(q, orEmptyDN(target))
	rows, err := h.p.Query(ctx, "SELECT "+dnCols+" FROM "+h.table+w.String()+" ORDER BY cip"+limit(count), w.args...)
	if err != nil {
		return nil, mapErr(err, dsvc.CodeInternal)
	}
	rs, err := pgx.CollectRows(rows, scanDN)
	if err != nil {
		if partial && len(rs) > 0 {
			return rs, nil
		}
		return nil, mapErr(err, dsvc.CodeInternal)
	}
	return rs, nil
}

func (h *DNTable) Count(ctx context.Context, q dsvc.Query, target *dsvc.DNRecord) (int, error) {
	w := dnWhere(q, orEmptyDN(target))
	var n int64
	if err := h.p.QueryRow(ctx, "SELECT count(*) FROM "+h.table+w.String(), w.args...).Scan(&n); err != nil {
		return 0, mapErr(err, dsvc.CodeInternal)
	}
	return int(n), nil
}

func (h *DNTable) Add(ctx context.Context, r *dsvc.DNRecord) error {
	nr := *r
	nr.Sig = dsvc.RandomSig()
	tag, err := h.p.Exec(ctx, "INSERT INTO "+h.table+" ("+dnCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING", dnArgs(&nr)...)
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	if tag.RowsAffected() == 0 {
		return dsvc.Errorf(dsvc.CodeExists, "client ip %v is stored", r.CIP)
	}
	r.Sig = nr.Sig
	return nil
}

func (h *DNTable) Modify(ctx context.Context, orig, r *dsvc.DNRecord) error {
	if orig == nil {
		return dsvc.Errorf(dsvc.CodeInval, "no original record")
	}
	nr := *r
	nr.Sig = dsvc.NextSig(orig.Sig)
	args := append(dnArgs(&nr), ip4(orig.CIP), int64(orig.Sig))
	tag, err := h.p.Exec(ctx, "UPDATE "+h.table+" SET cip = $1, cid = $2, flags = $3, sip = $4, lease = $5, macro = $6, comment = $7, sig = $8 WHERE cip = $9 AND sig = $10", args...)
	if err != nil {
		err = mapErr(err, dsvc.CodeInternal)
		if dsvc.CodeOf(err) == dsvc.CodeExists {
			return &dsvc.Error{Code: dsvc.CodeExists, Detail: "client ip " + r.CIP.String() + " is stored", Err: errors.Unwrap(err)}
		}
		return err
	}
	if tag.RowsAffected() == 0 {
		return missing(ctx, h.p, "SELECT 1 FROM "+h.table+" WHERE cip = $1", "client ip "+orig.CIP.String(), ip4(orig.CIP))
	}
	r.Sig = nr.Sig
	return nil
}

func (h *DNTable) Delete(ctx context.Context, r *dsvc.DNRecord) error {
	sql := "DELETE FROM " + h.table + " WHERE cip = $1"
	args := []any{ip4(r.CIP)}
	if r.Sig != 0 {
		sql += " AND sig = $2"
		args = append(args, int64(r.Sig))
	}
	tag, err := h.p.Exec(ctx, sql, args...)
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	if tag.RowsAffected() == 0 {
		return missing(ctx, h.p, "SELECT 1 FROM "+h.table+" WHERE cip = $1", "client ip "+r.CIP.String(), args[0])
	}
	return nil
}

// Import stores rs with their signatures (a new one, written back, where
// Sig is 0) in one transaction with COPY: all or nothing; ErrExists if one
// is stored.
func (h *DNTable) Import(ctx context.Context, rs []dsvc.DNRecord) error {
	sigs := make([]uint64, len(rs)) // written back only once committed
	for i := range rs {
		if sigs[i] = rs[i].Sig; sigs[i] == 0 {
			sigs[i] = dsvc.RandomSig()
		}
	}
	err := pgx.BeginFunc(ctx, h.p, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{h.name}, []string{"cip", "cid", "flags", "sip", "lease", "macro", "comment", "sig"},
			pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
				r := rs[i]
				r.Sig = sigs[i]
				return dnArgs(&r), nil
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

func (h *DNTable) Close() error { return nil }
