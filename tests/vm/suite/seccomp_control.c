/* The positive control of the suite's seccomp check: puts itself in seccomp's strict mode and
 * makes a call that mode refuses, so the kernel kills it and (with audit=1) logs a type=1326
 * record. The suite checks that such a record appears for this program and none for hpkvd. */
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void) {
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) {
        perror("prctl(PR_SET_SECCOMP)");
        return 2;
    }
    (void)getpid(); /* not read, write, exit or sigreturn: killed here */
    return 0;
}
