package doemu_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/doemu"
)

func TestLoadSeed(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, wantErr string
		dbs                 int
	}{
		{"good", `{"databases":[{"name":"app","region":"fra1","pools":[{"name":"web","mode":"session","size":3,"db":"defaultdb"}]}]}`, "", 1},
		{"typo", `{"databases":[{"name":"app","regoin":"fra1"}]}`, `unknown field "regoin"`, 0},
		{"not json", `databases: []`, "invalid character", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			seed, err := doemu.LoadSeed(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want one naming %s and %q", err, path, tc.wantErr)
				}
				return
			}
			if err != nil || len(seed.Databases) != tc.dbs {
				t.Fatalf("seed %+v, %v", seed, err)
			}
			if _, err := doemu.New(doemu.Options{Databases: seed.Databases}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := doemu.New(doemu.Options{Databases: []doemu.DatabaseSeed{{Name: "x", Region: "atlantis"}}}); err == nil {
		t.Fatal("a database in an unknown region was accepted")
	}
}
