/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* MESSAGE_IDs of coherencyd's journal records; systemd/coherencyd.catalog explains each. */
#define COH_MESSAGE_DECISION        "56ea55cacbf54bfaabb686c19008136e"
#define COH_MESSAGE_GRANT_END       "a31aadc285ac474dad65dd69506a7eb8"
#define COH_MESSAGE_POLICY_LOADED   "95a6494f9b424cbfa5febfbd7573915a"
#define COH_MESSAGE_POLICY_FAILED   "ca929c184e2d4b0da2958be50034b49a"
#define COH_MESSAGE_STARTED         "b2c9bd048f534253b2dafb5599df0afc"
#define COH_MESSAGE_STOPPED         "2666b193175c4ed8b102b6cb052f5e6a"
#define COH_MESSAGE_REQUEST_ERROR   "1b85ad80f7e84fb5b5b0e8c23b60ee8c"
#define COH_MESSAGE_JOURNAL_DROPPED "ef104fe735354deb83278cc18d205175"
