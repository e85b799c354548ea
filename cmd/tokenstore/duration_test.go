package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		give    string
		want    time.Duration
		wantErr string
	}{
		{give: "14d", want: 14 * day},
		{give: "1d12h", want: 36 * time.Hour},
		{give: "0d90m", want: 90 * time.Minute},
		{give: "36h", want: 36 * time.Hour},
		{give: "1h30m", want: 90 * time.Minute},
		{give: "250ms", want: 250 * time.Millisecond},
		{give: "+2d", want: 2 * day},
		{give: "0", want: 0},
		{give: "", wantErr: "use Go syntax"},
		{give: "d", wantErr: "use Go syntax"},
		{give: "14", wantErr: "use Go syntax"},
		{give: "14D", wantErr: "use Go syntax"},
		{give: "1d1d", wantErr: "use Go syntax"},
		{give: "2w", wantErr: "use Go syntax"},
		{give: "1.5d", wantErr: "whole number"},
		{give: "-1h", wantErr: "must not be negative"},
		{give: "1d-1h", wantErr: "must not be negative"},
		{give: "200000d", wantErr: "too long"},
		{give: "106751d24h", wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := parseDuration(tt.give)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Contains(t, err.Error(), `"`+tt.give+`"`)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		give time.Duration
		want string
	}{
		{14 * day, "14d"},
		{36 * time.Hour, "1d12h"},
		{day + 90*time.Minute, "1d1h30m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{10 * time.Minute, "10m"},
		{10 * time.Second, "10s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
		{-time.Hour, "-1h"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, formatDuration(tt.give))
			if tt.give >= 0 {
				back, err := parseDuration(tt.want)
				require.NoError(t, err)
				assert.Equal(t, tt.give, back, "round trip")
			}
		})
	}
}

func TestDurationValue(t *testing.T) {
	var d time.Duration
	v := (*durationValue)(&d)
	assert.Equal(t, "", v.String())
	require.NoError(t, v.Set("1d6h"))
	assert.Equal(t, 30*time.Hour, d)
	assert.Equal(t, "1d6h", v.String())
	assert.Equal(t, "duration", v.Type())
	require.Error(t, v.Set("soon"))
	assert.Equal(t, 30*time.Hour, d, "unchanged by a bad value")
}
