/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Linked with one daemon layer in whole (every object of its static library)
 * and only the layers below it: a module that calls up does not link. There
 * is nothing to run.
 */
int main(void) {
        return 0;
}
