package scale

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"function/shared/buckets"
	"function/shared/events"
	"function/shared/store"
	"function/shared/telemetry"
)

type bucketsRange = buckets.Range

// ActivateResult is the payload of the activation reply event.
type ActivateResult struct {
	Outcome
	ElapsedMS int64 `json:"elapsedMs"`
}

// HandleActivate scales a version invoked while at zero straight to
// max(min, 1), without waiting for the next cycle. It is single-flight per
// version: concurrent activations meet at the version's write claim, and one that
// arrives after another already wrote finds a non-zero count and stops.
//
// Each activation is one span, scale.activate.
func (h *Handler) HandleActivate(ctx context.Context, e event.Event) (*event.Event, error) {
	ctx, span := startSpan(ctx, e, "scale.activate")
	reply, err := h.handleActivate(ctx, e, span)
	telemetry.EndSpan(span, err)
	return reply, err
}

func (h *Handler) handleActivate(ctx context.Context, e event.Event, span trace.Span) (*event.Event, error) {
	a, err := events.ParseActivate(e)
	if err != nil {
		return nil, err
	}
	span.SetAttributes(attribute.String("nvcf.function_id", a.FunctionID), attribute.String("nvcf.function_version_id", a.FunctionVersionID))
	start := h.d.Now()
	key := store.VersionKey{FunctionID: a.FunctionID, FunctionVersionID: a.FunctionVersionID}
	log := h.d.Log.With("function_id", key.FunctionID, "function_version_id", key.FunctionVersionID, "event_id", e.ID())

	// A burst of invocations of one cold version sends a burst of
	// activations; in one replica they share one decision instead of each
	// reading Cassandra and racing for the version's write claim (a Paxos
	// round each). The shared work is not tied to the first caller's request, so
	// its client going away fails nobody else.
	ch := h.activations.DoChan(key.String(), func() (any, error) {
		return h.activate(context.WithoutCancel(ctx), log, a, key, start)
	})
	var o Outcome
	select {
	case <-ctx.Done():
		return nil, events.Unavailable("activate %s: %v", key, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		o = r.Val.(Outcome)
	}
	span.SetAttributes(attribute.Int("autoscaler.desired", o.Desired), attribute.String("autoscaler.action", o.Action),
		attribute.Int("autoscaler.last_requested", o.LastRequested))
	res := ActivateResult{Outcome: o, ElapsedMS: h.d.Now().Sub(start).Milliseconds()}
	if o.Action == "error" {
		return nil, events.Unavailable("activate %s: %s", key, o.Error)
	}
	return events.NewReply(e, events.TypeActivateResult, res)
}

// activate decides and applies one activation: max(min, 1) instances unless
// the version already runs or the NVCF API recently called it unknown.
func (h *Handler) activate(ctx context.Context, log *slog.Logger, a events.Activate, key store.VersionKey, start time.Time) (Outcome, error) {

	// The version may be newer than the last discovery: the event's NCA id
	// stands in until discovery has a row.
	v, err := h.d.Store.ReadVersion(ctx, key)
	if errors.Is(err, store.ErrNotActive) {
		v = store.ActiveVersion{VersionKey: key, NcaID: a.NcaID, Invoked: true, LastUpdatedAt: start}
	} else if err != nil {
		return Outcome{}, events.Unavailable("activate %s: %v", key, err)
	}
	if v.NcaID == "" {
		v.NcaID = a.NcaID
	}
	p, note := h.policies.For(ctx, v)
	desired := max(p.MinInstances, 1)
	if p.MaxInstances > 0 && desired > p.MaxInstances {
		desired = p.MaxInstances
	}
	o := Outcome{FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, Desired: desired, Valid: true, Reason: "activation", Detail: note}

	st, err := h.readState(ctx, key)
	if err != nil {
		return Outcome{}, events.Unavailable("activate %s: %v", key, err)
	}
	o.LastRequested = st.LastRequested
	// The not-found cache holds here as on the bucket path: an unknown
	// version's invocations would otherwise each cost an NVCF call. It is
	// checked again if the claim is lost to another writer, which may be a
	// concurrent activation in another replica that just recorded it.
	stillNeeded := func(fresh store.ScalingState) (bool, string) {
		if fresh.HasLastRequested && fresh.LastRequested > 0 {
			return false, "already_active"
		}
		if h.notFoundCached(fresh) {
			return false, "not_found"
		}
		return true, ""
	}
	if ok, why := stillNeeded(st); !ok {
		o.Action = why
	} else {
		h.write(ctx, log, &o, v, st, desired, 0, stillNeeded)
	}
	if o.Action == "written" {
		// Make sure the next cycle sees the version even before discovery
		// does; an activation is an invocation, so the row is an invoked one.
		v.Invoked, v.LastUpdatedAt = true, h.d.Now()
		if _, err := h.d.Store.UpsertVersions(ctx, []store.ActiveVersion{v}, h.d.Settings.Scale.RowTTL); err != nil {
			log.Warn("upsert activated version", "error", err.Error())
		}
		// An activation writes only from zero: a cold start to measure.
		if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.ColdFrom(start) }); err != nil {
			log.Warn("mark cold start", "error", err.Error())
		}
	}
	if o.Action == "not_found" && o.Error == "" {
		o.Reason = "not_found_cached"
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
	}
	h.d.Metrics.Decisions.WithLabelValues("activation").Inc()
	log.Info("activation", "desired", desired, "action", o.Action, "reason", o.Reason, "last_requested", st.LastRequested)
	return o, nil
}

// notFoundCached reports whether the NVCF API called the version unknown
// less than NOT_FOUND_RETRY ago.
func (h *Handler) notFoundCached(st store.ScalingState) bool {
	return st.Status == statusNotFound && h.d.Now().Sub(st.NotFoundAt) < h.d.Settings.Scale.NotFoundRetry
}
