package deploy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

// A hook gets the token compose interpolates into it, but neither the deploy
// output nor the error shows it: they show the hook as written.
func TestHookSecretsStayOutOfOutputAndErrors(t *testing.T) {
	const token = "tok-9f8e7d6c5b4a"
	tests := []struct {
		name    string
		hook    string
		wantErr bool
		shown   string // the hook as the output must show it
	}{
		{"succeeds", `printf %s "${DEPLOY_TOKEN}" > ran.txt`, false, `printf %s "${DEPLOY_TOKEN}" > ran.txt`},
		{"fails", `printf %s "${DEPLOY_TOKEN}" > ran.txt; exit 3`, true, `printf %s "${DEPLOY_TOKEN}" > ran.txt; exit 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "stack.yml")
			y := "services:\n  web:\n    image: app:1\nx-shoal:\n  hooks:\n    pre-deploy:\n      - '" + tt.hook + "'\n"
			if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := stack.Load(context.Background(), stack.Options{Files: []string{f}, Name: "shop", Env: []string{"DEPLOY_TOKEN=" + token}})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = runHooks(context.Background(), NewProgress(&out), "pre-deploy", st.Shoal.Hooks.PreDeploy, dir, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("runHooks: %v, want error %v", err, tt.wantErr)
			}
			if ran, _ := os.ReadFile(filepath.Join(dir, "ran.txt")); string(ran) != token {
				t.Errorf("hook ran with %q, want the interpolated token", ran)
			}
			if strings.Contains(out.String(), token) {
				t.Errorf("output shows the token:\n%s", out.String())
			}
			if !strings.Contains(out.String(), "Running pre-deploy hook: "+tt.shown) {
				t.Errorf("output does not show the hook as written (%s):\n%s", tt.shown, out.String())
			}
			if err != nil {
				if strings.Contains(err.Error(), token) {
					t.Errorf("error shows the token: %v", err)
				}
				if !strings.Contains(err.Error(), "${DEPLOY_TOKEN}") {
					t.Errorf("error %q does not name the hook as written", err)
				}
			}
		})
	}
}
