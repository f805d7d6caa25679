/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs a fuzz target over files and directories of inputs without libFuzzer,
 * so every target's corpus is replayed by ctest in every build (ASan/UBSan
 * included). With -DCOH_FUZZ=ON the same target links against libFuzzer instead.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        char chunk[4096];
        size_t n;
        while (m && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
                fwrite(chunk, 1, n, m);
        fclose(f);
        if (!m)
                return -ENOMEM;
        fclose(m);
        LLVMFuzzerTestOneInput((const uint8_t *) buf, len);
        free(buf);
        return 0;
}

int main(int argc, char **argv) {
        unsigned count = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %m\n", argv[i]);
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return EXIT_FAILURE;
                        count++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, alphasort);
                if (n < 0) {
                        fprintf(stderr, "%s: %m\n", argv[i]);
                        return EXIT_FAILURE;
                }
                for (int k = 0; k < n; k++) {
                        char path[4096];
                        if (names[k]->d_name[0] != '.') {
                                snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
                                if (run_file(path) < 0)
                                        return EXIT_FAILURE;
                                count++;
                        }
                        free(names[k]);
                }
                free(names);
        }
        if (count == 0) {
                fprintf(stderr, "no inputs replayed\n");
                return EXIT_FAILURE;
        }
        printf("%u inputs replayed\n", count);
        return EXIT_SUCCESS;
}
