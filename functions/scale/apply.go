package scale

// Applying: a decision becomes an NVCF write under the version's lock,
// at most once per cycle, and its outcome is recorded.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"function/shared/nvcf"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/telemetry"
)

// apply acts on one version's decision: holds and unchanged counts write
// nothing, nor does a count NVCF would clamp to the max it already runs
// (clampedNoop), nor a cycle already applied (a replay or a late event);
// anything else is written. running is the version's own running
// instances (-1 when unknown).
func (h *Handler) apply(ctx context.Context, log *slog.Logger, o *Outcome, v store.ActiveVersion, st store.ScalingState, d policy.Decision,
	cycle int64, running int) {
	key := v.VersionKey
	recheck := clampRecheckSteps * h.d.Settings.Scale.Step
	switch {
	case !d.Valid:
		o.Action = "held"
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusHeld)
	case st.HasLastRequested && d.Desired == st.LastRequested:
		o.Action = "unchanged"
		if st.HasAppliedTarget {
			reportClamp(o, st.LastRequested, st.AppliedTarget)
		}
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case clampedNoop(st, d.Desired, running, h.d.Now(), recheck):
		o.Action = "clamped"
		reportClamp(o, st.LastRequested, st.AppliedTarget)
		o.Detail += fmt.Sprintf("; not written: NVCF would clamp %d to the same max (written again after %s to see whether the max was raised)",
			d.Desired, recheck)
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case st.LastCycle >= cycle:
		// This cycle (or a newer one) already wrote this version: the
		// event is a replay or arrived late.
		o.Action = "already_applied"
	default:
		h.write(ctx, log, o, v, d.Desired, cycle, func(fresh store.ScalingState) (bool, string) {
			if fresh.LastCycle >= cycle {
				return false, "already_applied"
			}
			if fresh.HasLastRequested && fresh.LastRequested == d.Desired {
				return false, "unchanged"
			}
			return true, ""
		})
	}
}

// nvcfTarget is the instance count the NVCF API says it targets after a
// write: active + pending + allocating (terminating ones are leaving). An
// answer without counts (a dry run, the legacy HTTP API's empty body) says
// nothing, -1, rather than "zero"; so does a function that is not ACTIVE,
// whose request the API ignores rather than clamps.
func nvcfTarget(r nvcf.Result) int {
	n := r.ActiveInstances + r.PendingInstances + r.AllocatingInstances
	switch {
	case r.DryRun, n == 0 && r.FunctionStatus == "" && r.ScalingStatus == "":
		return -1
	case r.FunctionStatus != "" && r.FunctionStatus != "ACTIVE":
		return -1
	}
	return n
}

// clampRecheckSteps is how many steps (UTILIZATION_STEP) a version that
// NVCF clamped to its max goes without a write that would only be clamped
// again. NVCF tells a version's max only in its answer to a write, so the
// only way to learn that an operator raised it is to write: once every
// five steps (five minutes in production) instead of every cycle.
const clampRecheckSteps = 5

// lastTarget is the count NVCF targets after the version's last write:
// the request, or the max NVCF clamped it to. The policy measures its
// moves from it: from the request, a version clamped to 20 that the
// policy asked 67 of kept asking more (each step multiplies a count that
// never ran), and coming down took cycles of moves from 67 that changed
// nothing while 20 ran.
func lastTarget(st store.ScalingState) int {
	if clampedToMax(st) {
		return st.AppliedTarget
	}
	return st.LastRequested
}

// clampedToMax reports whether NVCF clamped the last request down to the
// version's max (a target of 0 is not taken for a max: NVCF's max is at
// least 1, and an answer with no instances yet says nothing).
func clampedToMax(st store.ScalingState) bool {
	return st.HasLastRequested && st.HasAppliedTarget && st.AppliedTarget > 0 && st.AppliedTarget < st.LastRequested
}

// clampedNoop reports whether writing desired would change nothing: NVCF
// clamped the last request to its max, and desired is at or above that
// max, so NVCF would target the same count again. It never blocks a real
// change: a count below the max is written; so is any count once more
// run than the max NVCF last answered (it was raised since), and once
// recheck has passed since the last write (only a write's answer tells
// whether the max was raised).
func clampedNoop(st store.ScalingState, desired, running int, now time.Time, recheck time.Duration) bool {
	switch {
	case !clampedToMax(st), desired < st.AppliedTarget, running > st.AppliedTarget:
		return false
	case desired == st.AppliedTarget:
		return true // wanting no more than the max, there is nothing to learn by asking
	}
	return now.Sub(st.LastWrittenAt) < recheck
}

// reportClamp says so in the outcome when the NVCF API targets another
// count than the request: it clamps requests to the sum of the version's
// min and max instances. The request stays the policy's count, so a
// clamped version is not written again every cycle; only its outcome
// tells why the count it runs differs from the one decided.
func reportClamp(o *Outcome, requested, target int) {
	if target == requested {
		return
	}
	bound := "max"
	if target > requested {
		bound = "min"
	}
	o.ClampedTo = &target
	clamp := fmt.Sprintf("clamped by NVCF to %d (%s)", target, bound)
	if o.Detail == "" {
		o.Detail = clamp
	} else {
		o.Detail += "; " + clamp
	}
}

const (
	statusOK           = "ok"
	statusNotFound     = "not_found"
	statusBeyondLimits = "beyond_limits"
)

// lockName is the per-version write lock. Ids may contain ':', which makes
// "fn:<function>:<version>" ambiguous (function "a:b" version "c" and
// function "a" version "b:c" would share a lock), so such ids get
// "fn/<function>/<version>": '/' is never in an id, and the prefix differs
// from every old-style name. Ids without ':' (NVCF's UUIDs) keep the old
// name, so during a rolling upgrade old and new replicas still meet at the
// same lock for every real version.
func lockName(key store.VersionKey) string {
	if strings.Contains(key.FunctionID, ":") || strings.Contains(key.FunctionVersionID, ":") {
		return "fn/" + key.FunctionID + "/" + key.FunctionVersionID
	}
	return "fn:" + key.FunctionID + ":" + key.FunctionVersionID
}

// write takes the version's lock, re-reads its state (another replica may
// have written it since the bucket was read), lets stillNeeded veto, writes
// to the NVCF API, and records the outcome. cycle is stored as the applied
// cycle; activations pass the state's own cycle so they never block the
// next bucket decision.
func (h *Handler) write(ctx context.Context, log *slog.Logger, o *Outcome, v store.ActiveVersion, desired int, cycle int64,
	stillNeeded func(store.ScalingState) (bool, string)) {
	s := h.d.Settings.Scale
	key := v.VersionKey
	// Unique per write attempt: two events for the same version in one
	// process (a redelivery racing the original, concurrent activations)
	// must not share a lease, or both would pass the lock.
	owner := fmt.Sprintf("%s/%d/%d", h.d.Settings.NodeID, cycle, h.seq.Add(1))
	_, err := h.d.Store.AcquireLock(ctx, lockName(key), owner, s.FunctionLockTTL)
	h.d.Metrics.Lock("function", err)
	var held *store.HeldError
	if errors.As(err, &held) {
		// Another replica is writing this version right now; it decides
		// from the same inputs, so there is nothing left to do here.
		o.Action = "locked"
		return
	}
	if err != nil {
		o.Action, o.Error = "error", err.Error()
		return
	}
	// keepLock is set when NVCF was written but the record that stops a
	// replay from writing again is not confirmed: the lock then stays until
	// its TTL, so the Knative retry and other replicas find the version
	// locked instead of writing it a second time.
	keepLock := false
	defer func() {
		if keepLock {
			log.Warn("function lock kept until its TTL: the NVCF write is not recorded", "lock_ttl", s.FunctionLockTTL.String())
			return
		}
		if err := h.d.Store.ReleaseLock(context.WithoutCancel(ctx), lockName(key), owner); err != nil {
			log.Warn("release function lock", "error", err.Error())
		}
	}()
	fresh, err := h.readState(ctx, key)
	if err != nil {
		o.Action, o.Error = "error", err.Error()
		return
	}
	if ok, why := stillNeeded(fresh); !ok {
		o.Action = why
		return
	}
	if fresh.HasLastRequested && fresh.LastCycle > cycle {
		cycle = fresh.LastCycle
	}
	// The write must end while the lock is held, or a second writer could
	// start before this one's record lands.
	wctx, cancel := context.WithTimeout(ctx, s.FunctionLockTTL-time.Second)
	defer cancel()
	result, err := h.d.NVCF.Autoscale(wctx, nvcf.Request{
		FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, NcaID: v.NcaID, Instances: desired,
	})
	rctx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		target := nvcfTarget(result)
		if rerr := h.d.Store.RecordWriteTarget(rctx, key, desired, target, cycle, statusOK, s.StateTTL); rerr != nil {
			// The NVCF write happened, but read back at SERIAL the record
			// is absent or unknown (a record whose lost answer turned out
			// applied is no error). The kept lock stops a second write
			// until its TTL; after it a later cycle may write the same
			// count again, which NVCF treats as a no-op.
			keepLock = true
			h.d.Metrics.Writes.WithLabelValues("not_recorded").Inc()
			o.Action, o.Error = "error", "written but not recorded: "+rerr.Error()
			return
		}
		o.Action, o.Applied = "written", &result
		if target >= 0 {
			reportClamp(o, desired, target)
		}
		h.d.Metrics.Writes.WithLabelValues("ok").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case errors.Is(err, nvcf.ErrNotFound):
		o.Action, o.Error = "not_found", err.Error()
		h.d.Metrics.Writes.WithLabelValues("not_found").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
		if rerr := h.d.Store.RecordOutcome(rctx, key, fresh.LastCycle, statusNotFound, h.d.Now(), s.StateTTL); rerr != nil {
			log.Warn("record not-found outcome", "error", rerr.Error())
		}
	case errors.Is(err, nvcf.ErrBeyondLimits):
		o.Action, o.Error = "beyond_limits", err.Error()
		h.d.Metrics.Writes.WithLabelValues("beyond_limits").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusBeyondLimits)
		if rerr := h.d.Store.RecordOutcome(rctx, key, cycle, statusBeyondLimits, time.Time{}, s.StateTTL); rerr != nil {
			log.Warn("record beyond-limits outcome", "error", rerr.Error())
		}
	default:
		o.Action, o.Error = "error", err.Error()
		h.d.Metrics.Writes.WithLabelValues("error").Inc()
		code := telemetry.StatusError
		if errors.Is(err, nvcf.ErrRateLimited) {
			code = telemetry.StatusRateLimited
		}
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, float64(code))
	}
}
