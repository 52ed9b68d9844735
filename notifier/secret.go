package notifier

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadSecret reads a secret from the file path names or, when path is
// empty, from the environment variable env. Trailing line breaks are
// dropped. what names the secret in errors; the secret itself never
// appears in one.
func ReadSecret(what, path, env string) (string, error) {
	var raw string
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read %s file: %w", what, err)
		}
		raw = string(b)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("read %s: environment variable %s is not set", what, env)
		}
		raw = v
	default:
		return "", fmt.Errorf("read %s: neither a file nor an environment variable is named", what)
	}
	s := strings.TrimRight(raw, "\r\n")
	if s == "" {
		return "", errors.New("read " + what + ": it is empty")
	}
	return s, nil
}
