package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every setting must appear in the README's configuration table, so the
// documentation cannot silently fall behind the code.
func TestEverySettingIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	var missing []string
	for _, typ := range []reflect.Type{reflect.TypeOf(Cassandra{}), reflect.TypeOf(TSDB{}), reflect.TypeOf(Common{}), reflect.TypeOf(Discovery{}), reflect.TypeOf(Scale{})} {
		for i := 0; i < typ.NumField(); i++ {
			key := typ.Field(i).Tag.Get("envconfig")
			if key == "" {
				continue
			}
			if !strings.Contains(string(readme), "| `"+key+"` |") {
				missing = append(missing, key)
			}
		}
	}
	require.Empty(t, missing, "add these to the README's configuration table")
}

// The table's default column is the code's default, so a changed default
// (e.g. one chosen by `make bench-policy`) cannot leave the README behind.
func TestDocumentedDefaultsAreTheCodes(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	documented := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		documented[key] = strings.Trim(strings.TrimSpace(cells[2]), "`")
	}
	var wrong []string
	for _, typ := range []reflect.Type{reflect.TypeOf(Cassandra{}), reflect.TypeOf(TSDB{}), reflect.TypeOf(Common{}), reflect.TypeOf(Discovery{}), reflect.TypeOf(Scale{})} {
		for i := 0; i < typ.NumField(); i++ {
			key := typ.Field(i).Tag.Get("envconfig")
			if got, ok := documented[key]; ok && got != typ.Field(i).Tag.Get("default") {
				wrong = append(wrong, key+": README says "+got+", code says "+typ.Field(i).Tag.Get("default"))
			}
		}
	}
	require.Empty(t, wrong, "fix the README's configuration table")
}
