package config

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// MaxFileBytes bounds a config file so a bad path (a device, a huge log) fails fast.
const MaxFileBytes = 16 << 20

// Duration is a time.Duration written as "250ms" or "5s" in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the human form so /config reads like the file.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a Go duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil {
			return fmt.Errorf("duration must be a string like \"5s\", got %s", b)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Load reads, parses, defaults and validates a YAML file.
func Load(path string) (*Bootstrap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	// Read through a limit rather than into a MaxFileBytes buffer: a large
	// allocation here would set the GC's heap target, and so the RSS, for
	// the life of the process.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config %s is larger than %d bytes", path, MaxFileBytes)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return b, nil
}

// Parse decodes YAML (or JSON) strictly: unknown fields are errors, so a
// typo does not silently fall back to a default.
func Parse(data []byte) (*Bootstrap, error) {
	var b Bootstrap
	if err := yaml.UnmarshalStrict(data, &b); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}
