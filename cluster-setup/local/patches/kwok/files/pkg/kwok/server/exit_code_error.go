package server

import (
	"errors"
	"os/exec"

	utilexec "k8s.io/utils/exec"
)

// exitCodeError turns a wrapped *exec.ExitError into the error type the
// kubelet streaming server reports as NonZeroExitCode with the exit code.
func exitCodeError(err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}
