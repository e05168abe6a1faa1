package stack

import (
	"context"
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// Hook is one x-shoal hook command.
type Hook struct {
	// Run is the command after compose interpolation: what sh -c runs.
	Run string
	// Text is how shoal prints the command and names it in errors: as written
	// in the stack file, so a ${DEPLOY_TOKEN} stays a name in CI logs (rule 6).
	Text string
}

// UnmarshalJSON reads a hook written as a string. Load fills in Text
// afterwards: only it knows the un-interpolated stack file.
func (h *Hook) UnmarshalJSON(b []byte) error {
	return json.Unmarshal(b, &h.Run)
}

// String is the command to show a person. A Hook built in Go rather than by
// Load has no Text; nothing was interpolated into it, so Run is safe to show.
func (h Hook) String() string {
	if h.Text == "" {
		return h.Run
	}
	return h.Text
}

// setText fills in each hook's Text. It loads the stack files a second time
// with compose-go's interpolation off (what `docker compose config
// --no-interpolate` does), so includes, overrides and !reset merge the raw
// hook lists exactly as they merged the interpolated ones. A raw hook is
// trusted only if interpolating it again gives the command that will run;
// otherwise (or if that load fails) the command is shown with the values of
// secret-looking variables masked.
func (h *Hooks) setText(ctx context.Context, projectOptions func(...cli.ProjectOptionsFn) (*cli.ProjectOptions, error), env types.Mapping) {
	if len(h.PreDeploy)+len(h.PostDeploy) == 0 {
		return // no second load (and no second fetch of remote includes) for nothing
	}
	var raw map[string][]string
	po, err := projectOptions(cli.WithInterpolation(false), cli.WithNormalization(false),
		// The interpolated load has validated already; un-interpolated values such
		// as replicas: ${N} would fail the schema here.
		cli.WithLoadOptions(loader.WithSkipValidation))
	if err == nil {
		if model, err := po.LoadModel(ctx); err == nil {
			raw = rawHooks(model)
		}
	}
	setText(h.PreDeploy, raw["pre-deploy"], env)
	setText(h.PostDeploy, raw["post-deploy"], env)
}

func rawHooks(model map[string]any) map[string][]string {
	ext, _ := model["x-shoal"].(map[string]any)
	hooks, _ := ext["hooks"].(map[string]any)
	out := map[string][]string{}
	for kind, v := range hooks {
		list, _ := v.([]any)
		for _, c := range list {
			s, ok := c.(string)
			if !ok {
				// A misaligned list is worse than none: fall back to redaction.
				out[kind] = nil
				break
			}
			out[kind] = append(out[kind], s)
		}
	}
	return out
}

func setText(hooks []Hook, raw []string, env types.Mapping) {
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	aligned := len(raw) == len(hooks)
	for i := range hooks {
		if aligned {
			if again, err := template.Substitute(raw[i], lookup); err == nil && again == hooks[i].Run {
				hooks[i].Text = raw[i]
				continue
			}
		}
		hooks[i].Text = Redact(hooks[i].Run, env)
	}
}

var secretName = regexp.MustCompile(`(?i)(TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL|AUTH|PRIVATE|_PASS$|_PW$|DSN|DATABASE_URL)`)

// Redact replaces in s every value of a variable in env whose name looks like
// a secret's with ***. It is the fallback for text whose un-interpolated form
// is unknown; values shorter than 4 characters are left alone, as masking
// every "1" or "yes" would make the text unreadable and protect nothing.
func Redact(s string, env map[string]string) string {
	var values []string
	for name, v := range env {
		if len(v) >= 4 && secretName.MatchString(name) {
			values = append(values, v)
		}
	}
	// Longest first, so a secret that contains another is masked whole.
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	for _, v := range values {
		s = strings.ReplaceAll(s, v, "***")
	}
	return s
}
