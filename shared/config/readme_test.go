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
