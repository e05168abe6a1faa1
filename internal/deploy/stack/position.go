package stack

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// compose-go's schema and interpolation errors name a dotted path
// ("services.db.imag") but not a line; people need the line.
var pathRE = regexp.MustCompile(`\b((?:services|networks|volumes|configs|secrets|x-shoal)(?:\.[A-Za-z0-9_-]+)+)`)

// withPosition appends file:line to err when the path it names is found in one of files.
func withPosition(err error, files []string) error {
	m := pathRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	path := strings.Split(m[1], ".")
	// Later files override earlier ones: report the last file that has the path.
	for i := len(files) - 1; i >= 0; i-- {
		if line := lineOf(files[i], path); line > 0 {
			what := err.Error()
			// jsonschema's words for a key the compose specification does not have.
			if strings.HasSuffix(what, m[1]+" false schema") {
				return fmt.Errorf("%s:%d: %s: unknown key: not in the compose specification (a typo?)", files[i], line, m[1])
			}
			return fmt.Errorf("%s:%d: %s: %w", files[i], line, m[1], err)
		}
	}
	return err
}

func lineOf(file string, path []string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return 0
	}
	n := doc.Content[0]
	line := 0
	for _, key := range path {
		next, l := child(n, key)
		if next == nil {
			break // the deepest known ancestor is still a useful place to look
		}
		n, line = next, l
	}
	return line
}

func child(n *yaml.Node, key string) (*yaml.Node, int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(key); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}
