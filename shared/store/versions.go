package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"golang.org/x/sync/errgroup"

	"function/shared/buckets"
)

// VersionKey is a row's partition key: one deployed version of a function.
type VersionKey struct {
	FunctionID        string
	FunctionVersionID string
}

func (k VersionKey) String() string { return k.FunctionID + "/" + k.FunctionVersionID }

// ActiveVersion is a function version discovery saw recently.
type ActiveVersion struct {
	VersionKey
	NcaID string
	// Invoked is true for versions with requests in the lookback (the
	// reference's recently_invoked_functions); false for versions that only
	// have running workers (running_functions_without_invocations).
	Invoked       bool
	LastUpdatedAt time.Time
	// InvokedAt is when discovery last saw the version invoked (the
	// invoked row's last_updated_at); zero when that row has aged out,
	// which means no invocation for at least the row TTL.
	InvokedAt time.Time
	// Source is the metric source discovery's series pointed to when it
	// wrote the row ("worker", "gateway", "control_plane"), or empty when
	// only the version's request counters were seen (a version at zero).
	// The scale function weighs it against the source it remembers.
	Source string
}

// upsertParallelism bounds UpsertVersions' batches in flight: enough to
// hide round trips, few enough not to swamp a small cluster. Batches of
// more partitions would only move this fan-out to the coordinator.
const upsertParallelism = 64

// UpsertVersions writes every version with a fresh TTL, so a version that
// stops appearing ages out on its own. It returns how many rows were written;
// on error some rows may have been written, which is harmless because the
// write is idempotent.
//
// Rows go up to StateBatch to a request, as unlogged batches of one table
// and neighbours on the ring (ringBatches), for what SaveStates says: the
// first cycle after an import writes a row per version, and the request
// per row, not the row, was most of what it cost Cassandra and discovery.
func (s *Store) UpsertVersions(ctx context.Context, versions []ActiveVersion, ttl time.Duration) (int, error) {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return 0, fmt.Errorf("upsert versions: %w", err)
	}
	var invoked, running []ActiveVersion
	for _, v := range versions {
		if v.Invoked {
			invoked = append(invoked, v)
		} else {
			running = append(running, v)
		}
	}
	key := func(v ActiveVersion) VersionKey { return v.VersionKey }
	upTo := func(rest []ActiveVersion) int { return min(StateBatch, len(rest)) }
	chunks := append(ringBatches(running, key, upTo), ringBatches(invoked, key, upTo)...)
	errs := sendEach(ctx, len(chunks), upsertParallelism, func(i int) error {
		chunk := chunks[i]
		stmt := fmt.Sprintf(`INSERT INTO %s (function_id, function_version_id, nca_id, last_updated_at, source) VALUES (?, ?, ?, ?, ?) USING TTL ?`, s.versionsTable(chunk[0].Invoked))
		b := s.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
		for _, v := range chunk {
			at := v.LastUpdatedAt
			if at.IsZero() {
				at = time.Now()
			}
			b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: []interface{}{v.FunctionID, v.FunctionVersionID, v.NcaID, at.UTC(), v.Source, secs}, Idempotent: true})
		}
		return s.session.ExecuteBatch(b)
	})
	written, failed := 0, 0
	var first error
	for i, err := range errs {
		if err == nil {
			written += len(chunks[i])
			continue
		}
		if failed++; first == nil {
			chunk := chunks[i]
			first = fmt.Errorf("upsert %s and %d more into %s: %w", chunk[0].VersionKey, len(chunk)-1, s.versionsTable(chunk[0].Invoked), err)
		}
	}
	if failed > 0 {
		return written, fmt.Errorf("%d of %d batches failed, first: %w", failed, len(chunks), first)
	}
	return written, nil
}

// versionsTable is the table of invoked versions' rows or of running ones'.
func (s *Store) versionsTable(invoked bool) string {
	if invoked {
		return s.tInvoked
	}
	return s.tRunning
}

// ReadBucket returns the active versions whose partition tokens fall in r,
// merged across both reference tables (a version both invoked and running
// appears once, as invoked). Paging is done by the driver at the configured
// page size, so a bucket of any size streams in bounded memory per page.
func (s *Store) ReadBucket(ctx context.Context, r buckets.Range) ([]ActiveVersion, error) {
	seen := map[VersionKey]int{}
	var out []ActiveVersion
	for _, t := range []struct {
		table   string
		invoked bool
	}{{s.tInvoked, true}, {s.tRunning, false}} {
		iter := s.session.Query(
			fmt.Sprintf(`SELECT function_id, function_version_id, nca_id, last_updated_at, source FROM %s
				WHERE token(function_id, function_version_id) >= ? AND token(function_id, function_version_id) <= ?`, t.table),
			r.Start, r.End,
		).WithContext(ctx).PageSize(s.cfg.PageSize).Iter()
		var v ActiveVersion
		var source *string
		for iter.Scan(&v.FunctionID, &v.FunctionVersionID, &v.NcaID, &v.LastUpdatedAt, &source) {
			v.Source = ""
			if source != nil {
				v.Source = *source
			}
			v.Invoked = t.invoked
			v.InvokedAt = time.Time{}
			if t.invoked {
				v.InvokedAt = v.LastUpdatedAt
			}
			if i, ok := seen[v.VersionKey]; ok {
				out[i].Invoked = out[i].Invoked || v.Invoked
				// The newer row carries the newer evidence.
				if v.LastUpdatedAt.After(out[i].LastUpdatedAt) {
					out[i].LastUpdatedAt = v.LastUpdatedAt
					if v.Source != "" {
						out[i].Source = v.Source
					}
				}
				if out[i].Source == "" {
					out[i].Source = v.Source
				}
				if out[i].NcaID == "" {
					out[i].NcaID = v.NcaID
				}
				continue
			}
			seen[v.VersionKey] = len(out)
			out = append(out, v)
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", r, t.table, err)
		}
	}
	return out, nil
}

// ReadVersion returns one active version, or ErrNotActive.
func (s *Store) ReadVersion(ctx context.Context, key VersionKey) (ActiveVersion, error) {
	for _, t := range []struct {
		table   string
		invoked bool
	}{{s.tInvoked, true}, {s.tRunning, false}} {
		v := ActiveVersion{VersionKey: key, Invoked: t.invoked}
		var source *string
		err := s.session.Query(
			fmt.Sprintf(`SELECT nca_id, last_updated_at, source FROM %s WHERE function_id = ? AND function_version_id = ?`, t.table),
			key.FunctionID, key.FunctionVersionID,
		).WithContext(ctx).Scan(&v.NcaID, &v.LastUpdatedAt, &source)
		if err == nil {
			if source != nil {
				v.Source = *source
			}
			if t.invoked {
				v.InvokedAt = v.LastUpdatedAt
			}
			return v, nil
		}
		if !isNotFound(err) {
			return ActiveVersion{}, fmt.Errorf("read version %s from %s: %w", key, t.table, err)
		}
	}
	return ActiveVersion{}, fmt.Errorf("read version %s: %w", key, ErrNotActive)
}

// StoredRow is what one version's row in one table says, and how long it
// has left to live.
type StoredRow struct {
	NcaID  string
	Source string
	// TTL is the time the row has left; zero when the row has no TTL.
	TTL time.Duration
}

// StoredRows are the live rows of both tables, by version.
type StoredRows struct {
	Invoked map[VersionKey]StoredRow
	Running map[VersionKey]StoredRow
}

// ReadStoredRows reads every live row of both tables with the time each
// has left, so discovery writes only the rows that are new, changed or due
// for a longer life. One paged scan per table costs far less than the
// write of every row it saves (at 100,000 versions, about 3 s a cycle).
func (s *Store) ReadStoredRows(ctx context.Context) (StoredRows, error) {
	out := StoredRows{Invoked: map[VersionKey]StoredRow{}, Running: map[VersionKey]StoredRow{}}
	var g errgroup.Group
	for table, rows := range map[string]map[VersionKey]StoredRow{s.tInvoked: out.Invoked, s.tRunning: out.Running} {
		g.Go(func() error {
			iter := s.session.Query(
				fmt.Sprintf(`SELECT function_id, function_version_id, nca_id, source, TTL(nca_id) FROM %s`, table),
			).WithContext(ctx).PageSize(s.cfg.PageSize).Iter()
			var (
				k      VersionKey
				nca    string
				source *string
				ttl    *int
			)
			for iter.Scan(&k.FunctionID, &k.FunctionVersionID, &nca, &source, &ttl) {
				r := StoredRow{NcaID: nca}
				if source != nil {
					r.Source = *source
				}
				if ttl != nil {
					r.TTL = time.Duration(*ttl) * time.Second
				}
				rows[k] = r
			}
			if err := iter.Close(); err != nil {
				return fmt.Errorf("read stored rows of %s: %w", table, err)
			}
			return nil
		})
	}
	return out, g.Wait()
}

// ErrNotActive says a version has no live row: discovery has not seen it
// within the row TTL.
var ErrNotActive = errors.New("function version is not active")

// TouchVersions refreshes the TTL of versions that still need scaling, so a
// function that is running but briefly missing from discovery's query does
// not age out from under its instances. The refresh goes to the running
// table only: an invoked row must age out when invocations stop, because
// its absence is the evidence of idleness that scale to zero relies on.
func (s *Store) TouchVersions(ctx context.Context, versions []ActiveVersion, ttl time.Duration) (int, error) {
	now := time.Now()
	touched := make([]ActiveVersion, len(versions))
	for i, v := range versions {
		v.LastUpdatedAt = now
		v.Invoked = false
		touched[i] = v
	}
	return s.UpsertVersions(ctx, touched, ttl)
}
