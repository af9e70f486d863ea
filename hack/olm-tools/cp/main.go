// Command cp is the one copy OLM's images run: the catalog operator's bundle-unpack Job calls
// `/bin/cp -Rv /bin/cpb /util/cpb` in its util image to hand cpb to the bundle container. knit's
// images hold single static binaries and no shell tools, so this copies one regular file (the
// -R and -v flags are accepted; -v prints what was copied).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	var paths []string
	verbose := false
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			verbose = verbose || strings.Contains(a, "v")
			continue
		}
		paths = append(paths, a)
	}
	if len(paths) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cp [-Rv] SOURCE-FILE DEST-FILE")
		os.Exit(2)
	}
	if err := copyFile(paths[0], paths[1]); err != nil {
		fmt.Fprintln(os.Stderr, "cp:", err)
		os.Exit(1)
	}
	if verbose {
		fmt.Printf("'%s' -> '%s'\n", paths[0], paths[1])
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
