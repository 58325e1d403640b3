"""Predict: how good is the trained model, where does it fail, and what does it look at?"""

import streamlit as st

from ui import draw_view, explain_view, predict_view, state

state.ensure_started_from_app()
predict_view.init_predict_state()

st.title("Predict")
runs = predict_view.usable_runs()
if not runs:
    st.info(predict_view.nothing_to_predict_with())
    st.page_link("pages/train.py", label="Go to Train", icon=":material/monitoring:")
else:
    run = predict_view.pick_run(runs)
    st.subheader("Try it on an image")  # first: the step a newcomer came for, on the first screen
    st.caption(predict_view.classes_known(run))
    tried = {}  # caption → model input, for "Look inside"
    upload_tab, camera_tab, draw_tab, test_tab = st.tabs(["Upload", "Webcam", "Draw", "A test image"])
    with upload_tab:
        upload = st.file_uploader(
            "A photo or drawing (PNG, JPEG, BMP, GIF, WebP)", type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], key="predict_upload"
        )
        if upload is not None and (prepared := predict_view.predict_upload(run, upload.getvalue(), upload.name, key="upload")):
            tried[f"Your upload: {upload.name}"] = prepared.model_input
    with camera_tab:
        if st.toggle("Turn the webcam on", key="predict_camera_on"):
            photo = st.camera_input("Take a photo", key="predict_camera")
            if photo is not None and (prepared := predict_view.predict_upload(run, photo.getvalue(), "webcam photo", key="camera")):
                tried["Your webcam photo"] = prepared.model_input
    with draw_tab:
        if drawing := draw_view.draw_tab(run):
            tried["Your drawing"] = drawing.model_input
    with test_tab:
        test_image = predict_view.draw_test_image(run)
    tried = {f"Test image #{st.session_state['predict_test_index']}": test_image.model_input, **tried}

    st.subheader("Test set")
    predict_view.draw_test_metrics(run)

    st.subheader("Where it goes wrong")
    predict_view.draw_error_analysis(run)

    st.subheader("Look inside the network")
    explain_view.draw_look_inside(run, tried)

    st.subheader("Learned features")
    explain_view.draw_learned_features(run)

    st.subheader("Export")
    explain_view.draw_export(run)

st.subheader("Import a .keras model")
explain_view.draw_import()
