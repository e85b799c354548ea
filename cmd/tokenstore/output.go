package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenstore/tokenstore"
)

// infoJSON is how commands print a token's Info with --json. Times are
// UTC, RFC 3339; last_used_at is null for a token never used; policy is
// written as the text output writes it, durations in days where whole
// ("sliding(idle=14d, max=30d)").
type infoJSON struct {
	ID         string            `json:"id"`
	FamilyID   string            `json:"family_id"` // the ID of the family's first token: id itself until a rotation
	Subject    string            `json:"subject"`
	CreatedAt  time.Time         `json:"created_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	Expired    bool              `json:"expired"`
	Policy     string            `json:"policy"`
	Scopes     []string          `json:"scopes,omitempty"`   // also in metadata, under "scope"
	Metadata   map[string]string `json:"metadata,omitempty"` // as stored
}

func newInfoJSON(info tokenstore.Info, now time.Time) infoJSON {
	j := infoJSON{
		ID:        info.ID.String(),
		FamilyID:  info.FamilyID.String(),
		Subject:   info.Subject,
		CreatedAt: info.CreatedAt.UTC(),
		ExpiresAt: info.ExpiresAt.UTC(),
		Expired:   !now.Before(info.ExpiresAt),
		Policy:    formatPolicy(info.Policy),
		Scopes:    info.Scopes(),
		Metadata:  info.Metadata,
	}
	if t, ok := lastUsed(info); ok {
		t = t.UTC()
		j.LastUsedAt = &t
	}
	return j
}

// lastUsed returns when a token was last used, and false for a token
// never used since it was issued (the store keeps its creation time then).
func lastUsed(info tokenstore.Info) (time.Time, bool) {
	return info.LastUsedAt, info.LastUsedAt.After(info.CreatedAt)
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printInfo writes a token's Info as aligned "key value" lines.
func printInfo(w io.Writer, info tokenstore.Info, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	used := "never"
	if t, ok := lastUsed(info); ok {
		used = formatTime(t) + " (" + formatAgo(now, t) + ")"
	}
	fmt.Fprintf(tw, "id\t%s\n", info.ID)
	fmt.Fprintf(tw, "family\t%s\n", formatFamily(info))
	fmt.Fprintf(tw, "subject\t%s\n", info.Subject)
	fmt.Fprintf(tw, "created\t%s (%s)\n", formatTime(info.CreatedAt), formatAgo(now, info.CreatedAt))
	fmt.Fprintf(tw, "last used\t%s\n", used)
	fmt.Fprintf(tw, "expires\t%s (%s)\n", formatTime(info.ExpiresAt), formatAgo(now, info.ExpiresAt))
	fmt.Fprintf(tw, "policy\t%s\n", formatPolicy(info.Policy))
	if s := info.Scopes(); s != nil {
		fmt.Fprintf(tw, "scopes\t%s\n", strings.Join(s, " "))
	}
	if m := metadataWithoutScopes(info.Metadata); len(m) > 0 {
		fmt.Fprintf(tw, "metadata\t%s\n", formatMetadata(m))
	}
	return tw.Flush()
}

// formatFamily is the family's ID, saying when the token is its first:
// then revoke --family and revoke --id differ only once it is rotated.
func formatFamily(info tokenstore.Info) string {
	if info.FamilyID == info.ID {
		return info.FamilyID.String() + " (its first token)"
	}
	return info.FamilyID.String()
}

// formatTime writes t in UTC, to the second.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// formatAgo says how far t is from now: "in 13d23h", "2h5m ago", "now".
func formatAgo(now, t time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if !future {
		d = -d
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	switch {
	case d == 0:
		return "now"
	case future:
		return "in " + formatDuration(d)
	}
	return formatDuration(d) + " ago"
}

// formatPolicy is Policy.String with days: "sliding(idle=14d, max=30d)".
func formatPolicy(p tokenstore.Policy) string {
	switch {
	case p.IsZero():
		return "default"
	case !p.IsSliding():
		return "absolute(" + formatDuration(p.TTL()) + ")"
	case p.MaxLifetime() == 0:
		return "sliding(idle=" + formatDuration(p.TTL()) + ")"
	}
	return "sliding(idle=" + formatDuration(p.TTL()) + ", max=" + formatDuration(p.MaxLifetime()) + ")"
}

// metadataWithoutScopes is m without the key that holds the scopes, which
// the text output shows on their own.
func metadataWithoutScopes(m map[string]string) map[string]string {
	if _, ok := m[tokenstore.ScopeKey]; !ok {
		return m
	}
	m = maps.Clone(m)
	delete(m, tokenstore.ScopeKey)
	return m
}

// formatMetadata writes m as "k=v, k=v", sorted, quoting what would blur.
func formatMetadata(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIfNeeded(k))
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(m[k]))
	}
	return b.String()
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " ,=\"") {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// count writes "1 token", "2 tokens".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// formatBytes writes n in binary units: "512 B", "40.0 KiB", "1.3 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
