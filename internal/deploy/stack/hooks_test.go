package stack_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/deploy/stack"
)

const token = "tok-9f8e7d6c5b4a"

// Hooks run interpolated but are shown as written, so a token interpolated
// into a hook stays out of CI logs and errors.
func TestLoadKeepsHookTextAsWritten(t *testing.T) {
	const service = "services:\n  web:\n    image: app:1\n"
	tests := []struct {
		name    string
		files   map[string]string // written in order; the first is the main file
		env     []string
		envFile string
		// want[i] is pre-deploy hook i as shown; where it names DEPLOY_TOKEN
		// (or masks it), the command run must hold the token
		want []string
	}{
		{
			name:  "token from the environment",
			files: map[string]string{"stack.yml": service + "x-shoal:\n  hooks:\n    pre-deploy: ['curl -H \"Authorization: Bearer ${DEPLOY_TOKEN}\" https://hooks.example/deploy']\n"},
			env:   []string{"DEPLOY_TOKEN=" + token},
			want:  []string{`curl -H "Authorization: Bearer ${DEPLOY_TOKEN}" https://hooks.example/deploy`},
		},
		{
			name:    "token from an env file, with a default and an escaped shell variable",
			files:   map[string]string{"stack.yml": service + "x-shoal:\n  hooks:\n    pre-deploy: ['notify --token ${DEPLOY_TOKEN:-none} \"$$SHOAL_VERSION\"']\n"},
			envFile: "DEPLOY_TOKEN=" + token + "\n",
			want:    []string{`notify --token ${DEPLOY_TOKEN:-none} "$$SHOAL_VERSION"`},
		},
		{
			name: "hooks from an override file",
			files: map[string]string{
				"stack.yml":          service + "x-shoal:\n  hooks:\n    pre-deploy: ['echo one']\n",
				"stack.override.yml": "x-shoal:\n  hooks:\n    pre-deploy: ['notify ${DEPLOY_TOKEN}']\n",
			},
			env: []string{"DEPLOY_TOKEN=" + token},
			// compose-go appends an override's list to the base's
			want: []string{"echo one", "notify ${DEPLOY_TOKEN}"},
		},
		{
			// Interpolation off cannot find the included file, so shoal falls
			// back to masking the values of secret-looking variables.
			name: "include by variable falls back to redaction",
			files: map[string]string{
				"stack.yml":     "include: ['${PARTS}/svc.yml']\n" + "x-shoal:\n  hooks:\n    pre-deploy: ['notify ${DEPLOY_TOKEN}']\n",
				"parts/svc.yml": service,
			},
			env:  []string{"DEPLOY_TOKEN=" + token, "PARTS=parts"},
			want: []string{"notify ***"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for _, name := range []string{"stack.yml", "stack.override.yml", "parts/svc.yml"} {
				content, ok := tt.files[name]
				if !ok {
					continue
				}
				f := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(name, "/") {
					files = append(files, f)
				}
			}
			opts := stack.Options{Files: files, Name: "shop", Env: tt.env}
			if tt.envFile != "" {
				f := filepath.Join(dir, "deploy.env")
				if err := os.WriteFile(f, []byte(tt.envFile), 0o600); err != nil {
					t.Fatal(err)
				}
				opts.EnvFiles = []string{f}
			}
			st, err := stack.Load(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			hooks := st.Shoal.Hooks.PreDeploy
			if len(hooks) != len(tt.want) {
				t.Fatalf("pre-deploy hooks = %+v, want %d", hooks, len(tt.want))
			}
			for i, h := range hooks {
				if strings.ContainsAny(tt.want[i], "$*") && !strings.Contains(h.Run, token) {
					t.Errorf("hook %d runs %q: want the interpolated token", i, h.Run)
				}
				if got := h.String(); got != tt.want[i] {
					t.Errorf("hook %d shown as %q, want %q", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	env := map[string]string{
		"DEPLOY_TOKEN": token, "DB_PASSWORD": "hunter2", "API_KEY": "abcd1234",
		"SECRET_PREFIX": "tok", // shorter than 4: left alone
		"REGION":        "fra1-region",
		"LONG_SECRET":   token + "-more", // contains DEPLOY_TOKEN's value: masked whole
	}
	tests := []struct{ in, want string }{
		{"curl -H 'Bearer " + token + "' x", "curl -H 'Bearer ***' x"},
		{"psql postgres://u:hunter2@db/app?key=abcd1234", "psql postgres://u:***@db/app?key=***"},
		{"deploy to fra1-region", "deploy to fra1-region"},
		{"x " + token + "-more y", "x *** y"},
		{"tok tok", "tok tok"},
	}
	for _, tt := range tests {
		if got := stack.Redact(tt.in, env); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
