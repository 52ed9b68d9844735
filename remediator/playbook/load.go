package playbook

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in one playbook file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every problem found while loading, in file and line order.
type Errors []Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return es[i].File < es[j].File
		}
		return es[i].Line < es[j].Line
	})
	return es
}

// Load reads every file that the glob patterns name and builds a Set. It
// returns Errors listing every problem in every file; on error the Set is
// nil, so a caller never runs a partly valid set.
func Load(patterns ...string) (*Set, error) {
	files, err := expand(patterns)
	if err != nil {
		return nil, err
	}
	var (
		all  []*Playbook
		errs Errors
	)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, Error{File: f, Msg: fmt.Sprintf("read: %v", err)})
			continue
		}
		pb, perrs := Parse(f, data)
		errs = append(errs, perrs...)
		if pb != nil {
			all = append(all, pb)
		}
	}
	set, serrs := newSet(all)
	errs = append(errs, serrs...)
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return set, nil
}

func expand(patterns []string) ([]string, error) {
	seen := map[string]bool{}
	var files []string
	for _, p := range patterns {
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("playbook pattern %q: %w", p, err)
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				files = append(files, m)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no playbook files match %s", strings.Join(patterns, ", "))
	}
	sort.Strings(files)
	return files, nil
}

var (
	yamlLine   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	goTypeName = regexp.MustCompile(`field (\S+) not found in type [\w.]+`)
)

// Parse decodes one playbook file strictly (unknown fields are errors),
// applies defaults and validates it. It returns the playbook only when
// there were no errors.
func Parse(file string, data []byte) (*Playbook, Errors) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(file, err)
	}
	if len(root.Content) == 0 {
		return nil, Errors{{File: file, Msg: "empty playbook file"}}
	}

	var pb Playbook
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// A TypeError (unknown field, bad value) leaves the rest decoded: go on
	// and validate it too, so every error in the file is reported at once.
	var decodeErrs Errors
	if err := dec.Decode(&pb); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, yamlErrors(file, err)
		}
		decodeErrs = yamlErrors(file, err)
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, Errors{{File: file, Line: extra.Line,
			Msg: "more than one YAML document: put one playbook in each file"}}
	}

	pb.File = file
	pb.Line = root.Content[0].Line
	doc := root.Content[0]
	for i := range pb.Steps {
		pb.Steps[i].Line = lineOf(doc, "steps", strconv.Itoa(i))
	}
	pb.applyDefaults()
	if errs := append(decodeErrs, pb.validate(doc)...); len(errs) > 0 {
		return nil, errs.sorted()
	}
	return &pb, nil
}

func yamlErrors(file string, err error) Errors {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	errs := make(Errors, 0, len(msgs))
	for _, m := range msgs {
		e := Error{File: file, Msg: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
		}
		e.Msg = goTypeName.ReplaceAllString(e.Msg, "unknown field $1")
		errs = append(errs, e)
	}
	return errs
}

// lineOf follows path (mapping keys, or sequence indexes as digits) from n
// and returns the line of the key or item it ends at, or of the deepest one
// it reached.
func lineOf(n *yaml.Node, path ...string) int {
	line := n.Line
	for _, key := range path {
		next, at := child(n, key)
		if next == nil {
			return line
		}
		n, line = next, at
	}
	return line
}

// child returns the value under key in a mapping, or the item at an index
// in a sequence, and the line where the key or item starts.
func child(n *yaml.Node, key string) (*yaml.Node, int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		i, err := strconv.Atoi(key)
		if err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}

// FindLine follows path (mapping keys, or sequence indexes as digits) from
// n and returns the line where the last key or item starts, and whether the
// whole path exists. Configuration files use it to put a line on their
// errors.
func FindLine(n *yaml.Node, path ...string) (int, bool) {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, key := range path {
		if n == nil {
			return 0, false
		}
		next, at := child(n, key)
		if next == nil {
			return 0, false
		}
		n, line = next, at
	}
	return line, n != nil
}
